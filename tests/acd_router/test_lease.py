"""The lease in one process: roles, standby refusals, fencing of an ex-holder, CTI verdicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from services.acd_router.app import create_app
from services.acd_router.domain import QueueEntry
from services.acd_router.lease import ALIVE, GONE, UNKNOWN, Leadership
from services.acd_router.settings import AcdSettings
from shared.auth import Auth
from shared.bus.memory import MemoryBus
from shared.settings import CommonSettings
from tests.conftest import bearer, eventually, running


def settings(common: CommonSettings, name: str) -> AcdSettings:
    return AcdSettings(common=common, instance_id=name, exit_on_lease_loss=False,
                       lease_seconds=3.0, lease_renew_seconds=0.2)


async def test_standby_refuses_writes_and_fences_the_ex_holder(common: CommonSettings,
                                                                auth: Auth) -> None:
    headers = bearer(auth, "supervisor")
    login = {"skills": {"repair": 5}}
    first_app = create_app(settings(common, "one"), bus=MemoryBus())
    second_app = create_app(settings(common, "two"), bus=MemoryBus())
    async with running(first_app) as first, running(second_app) as second:
        one: Leadership = first_app.state.leadership
        two: Leadership = second_app.state.leadership
        assert (await first.get("/ready")).json()["role"] == "active"
        ready = await second.get("/ready")
        assert ready.status_code == 200 and ready.json()["role"] == "standby"
        assert (await first.post("/v1/agents/A1/login", json=login,
                                 headers=headers)).status_code == 200
        refused = await second.post("/v1/agents/A2/login", json=login, headers=headers)
        assert refused.status_code == 503
        assert refused.json()["detail"]["active_instance"] == "one"
        # Reads work on the standby.
        assert (await second.get("/v1/agents/A1", headers=headers)).json()["state"] \
            == "not_ready"
        assert not second_app.state.service.messaging.consuming

        # "one" stalls past its lease (simulated by expiring the row); "two" takes over.
        async def take_over() -> bool:
            async with second_app.state.service.sessions() as session, session.begin():
                await session.execute(text(
                    "UPDATE acd.leader_lease SET expires_at = clock_timestamp()"
                    " - interval '1 second'"))
            return await two.try_acquire()

        await eventually(take_over, timeout=5)
        await two.promote()
        # "two"'s own standby loop (every 0.2 s) may see the expired lease too and take it
        # once more: a later epoch of the same holder, which fences "one" just the same.
        assert two.role == "active" and two.epoch >= 2
        assert second_app.state.service.messaging.consuming
        # The ex-holder still believes it is active, but cannot write: fenced by the epoch.
        fenced = await first.post("/v1/agents/A3/login", json=login, headers=headers)
        assert fenced.status_code == 503, fenced.text
        assert fenced.json()["detail"]["active_instance"] == "two"
        await eventually(lambda: one.role == "standby", timeout=5)
        assert (await second.post("/v1/agents/A3/login", json=login,
                                  headers=headers)).status_code == 200
        instance = (await second.get("/v1/instance", headers=headers)).json()
        assert instance["role"] == "active" and instance["instance"] == "two"


async def test_cti_verdicts(common: CommonSettings) -> None:
    calls: dict[str, dict[str, Any]] = {
        "ringing": {"state": "alerting", "reservation_id": "R1"},
        "other": {"state": "alerting", "reservation_id": "R-other"},
        "ended": {"state": "released", "reservation_id": "R1"},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        call = calls.get(request.url.path.rsplit("/", 1)[-1])
        if request.url.path.endswith("/broken"):
            return httpx.Response(500)
        return httpx.Response(200, json=call) if call else httpx.Response(404)

    app = create_app(settings(common, "one"), bus=MemoryBus())
    async with running(app):
        leadership: Leadership = app.state.leadership
        leadership.service.http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        now = datetime.now(UTC)

        def entry(call_id: str) -> QueueEntry:
            return QueueEntry(call_id=call_id, queue="repair", enqueued_at=now, priority=0,
                              skills=["repair"], customer=None, from_number=None,
                              reservation_id="R1")

        verdicts = {c: await leadership.cti_verdict(entry(c))
                    for c in ("ringing", "other", "ended", "missing", "broken")}
        assert verdicts == {"ringing": ALIVE, "other": UNKNOWN, "ended": GONE,
                            "missing": GONE, "broken": UNKNOWN}
