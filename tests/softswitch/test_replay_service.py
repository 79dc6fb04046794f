"""The replayer against a stand-in CTI (and stand-in ACD, workorder, recording) over real
sockets, with its own state in a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from services.softswitch.app import create_app
from services.softswitch.settings import SoftswitchSettings
from shared.bus.memory import MemoryBus
from tests.conftest import bearer, eventually, running
from tests.softswitch.standin import StandIn, serve

SPEED = 10.0
SAMPLE_TEXT = (Path(__file__).resolve().parents[2] / "traces" / "sample-busy-hour.jsonl"
               ).read_text(encoding="utf-8")


def _lines(*records: object) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


TRACE = _lines(
    {"kind": "header", "format": "hotline-trace/1", "name": "tiny",
     "start": "2026-07-15T08:00:00+08:00"},
    {"kind": "customer", "ani": "+8613800000001", "account": "3100000001", "name": "Li",
     "tier": "vip", "area": "A-001", "flags": ["elderly_alone"]},
    {"kind": "agent", "id": "A1", "team": "T1", "skills": {"repair": 8}, "login": 0,
     "logout": 600, "answer_after": 1.0, "wrapup": 2},
    {"kind": "outage", "at": 1, "area": "A-001", "type": "fault", "restore_eta": 20},
    # "7" is invalid: the IVR announces it (no entry consumed) and asks again.
    {"kind": "call", "id": "C1", "at": 0.5, "from": "+8613800000001", "to": "95598",
     "dtmf": ["7", "1"], "think": 0.5, "patience": 120, "talk": 4,
     "disposition": {"workorder": {"type": "repair"},
                     "callback": {"answer_on_attempt": 2, "satisfaction": "neutral"}}},
    {"kind": "call", "id": "C2", "at": 1.0, "from": "+8613900000002", "dtmf": ["2"],
     "think": 0.5, "patience": 60, "talk": 30},
    {"kind": "call", "id": "C3", "at": 1.5, "from": "+8613900000003", "dtmf": ["9"],
     "think": 0.5, "patience": 3, "talk": 30},
    {"kind": "call", "id": "C4", "at": -1, "from": "+861"},
    {"kind": "weather", "at": 3, "rain": True},
    "{not json",
)


def _settings(common, base: str) -> SoftswitchSettings:
    common = common.model_copy(update={"cti_url": base, "acd_url": base, "workorder_url": base,
                                       "recording_url": base})
    return SoftswitchSettings(common=common, drain_timeout_seconds=15, settle_poll_seconds=0.2,
                              customer_ring_seconds=1.0, customer_answer_seconds=0.5,
                              survey_think_seconds=0.5, ack_grace_seconds=2.0,
                              reconnect_min_seconds=0.05, invite_retransmit_seconds=0.3)


async def test_replay_drives_calls_agents_orders_and_callbacks(common, auth) -> None:
    standin = StandIn(auth)
    standin.drop_first_connection = True  # the link must reconnect by itself
    standin.lose_first_invite_of = "-C2"  # the switch must send it again
    async with serve(standin) as base:
        app = create_app(_settings(common, base), bus=MemoryBus())
        async with running(app) as client:
            admin = bearer(auth, "admin")
            response = await client.post(f"/v1/replays?speed={SPEED}&name=t1", content=TRACE,
                                         headers={**admin, "content-type": "application/x-ndjson"})
            assert response.status_code == 202, response.text
            body = response.json()
            replay_id = body["replay_id"]
            assert [(e["line"], e["kind"]) for e in body["errors"]] == [(8, "call"), (10, None)]
            assert "at" in body["errors"][0]["error"]

            async def finished():
                view = (await client.get(f"/v1/replays/{replay_id}", headers=admin)).json()
                return view if view["state"] in ("finished", "failed") else None

            view = await eventually(finished, timeout=30)
            assert view["state"] == "finished", view
            report = view["report"]
            assert report["drained"] is True, report
            assert report["offered"] == 3
            assert report["answered"] == 1
            assert report["abandoned"] == 1
            assert report["short_abandons"] == 1  # patience 3 s < 5 s
            assert report["self_served"] == 1
            assert report["offered_to_queue"] == 2
            assert report["service_level"] == 1.0
            assert 1.0 <= report["asa_seconds"] < 5.0
            assert report["average_talk_seconds"] == 4.0
            assert report["work_orders_created"] == 1
            assert report["callbacks_done"] == 1
            assert report["callback_completion_rate"] == 1.0
            assert report["satisfaction"]["neutral"] == 1

            seen = standin.seen
            assert standin.connections >= 2
            c1 = f"{replay_id}-C1"
            # One entry per prompt with collect: "7", then "1" after the re-prompt.
            assert seen.digits[c1] == ["7", "1"]
            assert seen.digits[f"{replay_id}-C2"] == ["2"]
            assert standin.lost == {f"{replay_id}-C2"}
            assert seen.released[f"{replay_id}-C2"] == "ivr_release"
            assert seen.released[f"{replay_id}-C3"] == "caller_hangup"
            assert seen.released[c1] == "agent_hangup"
            # ACK carries its own cseq, after the INVITE's.
            invite = next(f for f in seen.frames if f.get("method") == "INVITE"
                          and f.get("call_id") == c1 and f["type"] == "request")
            assert invite["from"] == "+8613800000001" and invite["to"] == "95598"
            ack = next(f for f in seen.frames if f.get("method") == "ACK"
                       and f.get("call_id") == c1 and f["type"] == "request")
            assert ack["cseq"] > invite["cseq"]
            # Agent phone: 180 at once, then 200 after INFO control=answer from the desktop.
            statuses = [f["status"] for f in seen.frames if f["type"] == "response"
                        and f.get("leg") == "agent" and f.get("method") == "INVITE"]
            assert statuses == [180, 200]
            assert seen.answers == [(c1, "A1")]
            assert seen.logins[0] == ("A1", {"skills": {"repair": 8}, "device": "agent:A1",
                                             "team": "T1"})
            assert ("A1", "ready") in seen.states and seen.states[-1] == ("A1", "logged_out")
            # Media: exactly the connected time (4 trace seconds) of 8 kHz s16le.
            media = seen.media[c1]
            assert media["start"]["sample_rate"] == 8000 and media["stop"] is True
            assert media["bytes"] == 4 * 8000 * 2
            # Order from the desktop, for a known customer, idempotent per replay and call.
            order = seen.orders["WO-1"]
            assert order["customer_account"] == "3100000001"
            assert order["idempotency_key"] == f"{replay_id}:C1"
            assert order["call_id"] == c1 and order["type"] == "repair"
            assert "contact_number" not in order
            assert seen.customer_digits == ["2"]
            # Callback: the first attempt goes unanswered (480), the second is answered.
            customer_statuses = [f["status"] for f in seen.frames if f["type"] == "response"
                                 and f.get("leg") == "customer"
                                 and f.get("method") == "INVITE"]
            assert customer_statuses == [180, 480, 180, 200]
            assert seen.customers[0]["account"] == "3100000001"
            assert seen.customers[0]["ani"] == "+8613800000001"
            assert seen.outages[0]["area"] == "A-001" and "restore_eta" in seen.outages[0]
            assert seen.restored == ["O1"]  # power back at the trace's restore_eta

            calls = (await client.get(f"/v1/replays/{replay_id}/calls", headers=admin)).json()
            by_id = {c["trace_call_id"]: c for c in calls}
            assert by_id["C1"]["outcome"] == "answered" and by_id["C1"]["order_id"] == "WO-1"
            assert by_id["C1"]["talk"] == 4.0 and by_id["C1"]["agent_id"] == "A1"
            assert by_id["C3"]["outcome"] == "abandoned"
            assert abs(by_id["C3"]["ended_at"] - by_id["C3"]["queued_at"] - 3.0) < 1e-6

            # CTI asking after a restart whether the switch still has a call: an ended one
            # and one never seen are both gone (481), so CTI releases them.
            for call_id in (c1, "never-seen"):
                await standin.request("OPTIONS", call_id, "caller")

            async def answers() -> list[int] | None:
                got = [f["status"] for f in seen.frames if f.get("type") == "response"
                       and f.get("method") == "OPTIONS"]
                return got if len(got) == 2 else None

            assert await eventually(answers, timeout=10) == [481, 481]

        # A new process on the same database still has the replay, its errors and report.
        async with running(create_app(_settings(common, base), bus=MemoryBus())) as client:
            again = (await client.get(f"/v1/replays/{replay_id}", headers=admin)).json()
            assert again["state"] == "finished"
            assert again["report"] == report
            assert [e["line"] for e in again["errors"]] == [8, 10]
            listed = (await client.get("/v1/replays", headers=admin)).json()
            assert [r["replay_id"] for r in listed] == [replay_id]


async def test_start_refusals(common, auth) -> None:
    standin = StandIn(auth)
    async with serve(standin) as base:
        async with running(create_app(_settings(common, base), bus=MemoryBus())) as client:
            admin = bearer(auth, "admin")
            no_header = _lines({"kind": "agent", "id": "A1", "skills": {"repair": 1}})
            response = await client.post("/v1/replays", content=no_header, headers=admin)
            assert response.status_code == 400
            only_header = _lines({"kind": "header", "format": "hotline-trace/1"})
            response = await client.post("/v1/replays", content=only_header, headers=admin)
            assert response.status_code == 400
            response = await client.post("/v1/replays", content=TRACE,
                                         headers=bearer(auth, "agent"))
            assert response.status_code == 403
            assert (await client.get("/v1/replays/nope", headers=admin)).status_code == 404


async def test_unreachable_cti_fails_the_replay(common, auth) -> None:
    settings = _settings(common, "http://127.0.0.1:9")
    settings = settings.model_copy(update={"connect_timeout_seconds": 0.5})
    async with running(create_app(settings, bus=MemoryBus())) as client:
        admin = bearer(auth, "admin")
        response = await client.post("/v1/replays?speed=50", content=TRACE, headers=admin)
        assert response.status_code == 202
        replay_id = response.json()["replay_id"]

        async def failed():
            view = (await client.get(f"/v1/replays/{replay_id}", headers=admin)).json()
            return view if view["state"] == "failed" else None

        view = await eventually(failed, timeout=10)
        assert "switch link" in view["failure"]


async def test_a_slice_of_the_sample_trace_at_speed(common, auth) -> None:
    """The first 12 minutes of the bundled busy hour, every party at once, at speed 60."""
    # Without the outages: their restoration comes after the slice ends.
    kept = [line for line in SAMPLE_TEXT.splitlines()
            if json.loads(line)["kind"] != "outage"
            and (json.loads(line)["kind"] != "call" or json.loads(line)["at"] <= 720)]
    calls = sum(1 for line in kept if json.loads(line)["kind"] == "call")
    standin = StandIn(auth, billing_timeout=0.3)
    async with serve(standin) as base:
        app = create_app(_settings(common, base), bus=MemoryBus())
        async with running(app) as client:
            admin = bearer(auth, "admin")
            response = await client.post("/v1/replays?speed=60", content="\n".join(kept),
                                         headers=admin)
            assert response.status_code == 202, response.text
            replay_id = response.json()["replay_id"]

            async def finished():
                view = (await client.get(f"/v1/replays/{replay_id}", headers=admin)).json()
                return view if view["state"] in ("finished", "failed") else None

            view = await eventually(finished, timeout=90, interval=0.5)
            report = view["report"]
            assert view["state"] == "finished" and report["drained"], report
            assert report["offered"] == calls
            assert (report["answered"] + report["abandoned"] + report["self_served"]
                    == calls), report
            assert report["answered"] > calls / 2
            assert report["work_orders_created"] == report["answered"]
            assert report["callback_completion_rate"] == 1.0
            assert len(standin.seen.logins) == 20
            rows = (await client.get(f"/v1/replays/{replay_id}/calls", headers=admin)).json()
            for row in rows:
                if row["outcome"] == "answered":
                    media = standin.seen.media[row["call_id"]]
                    assert media["stop"] and media["bytes"] == round(row["talk"] * 8000) * 2


async def test_a_replay_is_refused_while_an_earlier_ones_calls_remain_until_reset(common,
                                                                                 auth) -> None:
    """Isolation: leftovers (a live call, a caller queued on virtual hold) are refused with
    the way out named; the reset releases and withdraws them, audited; then it starts."""
    from sqlalchemy import select

    from services.softswitch.db import resets

    standin = StandIn(auth)
    standin.leftover_calls = ["rold-C1"]
    standin.leftover_queued = ["rold-C2"]
    async with serve(standin) as base:
        app = create_app(_settings(common, base), bus=MemoryBus())
        async with running(app) as client:
            admin = bearer(auth, "admin", subject="ops-1")
            headers = {**admin, "content-type": "application/x-ndjson"}
            refused = await client.post(f"/v1/replays?speed={SPEED}", content=TRACE,
                                        headers=headers)
            assert refused.status_code == 409, refused.text
            message = refused.json()["detail"]["message"]
            assert "1 live call(s) and 1 queued" in message and "--reset" in message

            reset = await client.post("/v1/replays/reset", headers=admin)
            assert reset.status_code == 200, reset.text
            assert reset.json()["calls_released"] == 1
            assert reset.json()["entries_withdrawn"] == 1
            assert standin.seen.reset == [("released", "rold-C1"), ("withdrawn", "rold-C2")]
            service = app.state.service
            async with service.sessions() as session:
                audit = (await session.execute(select(resets))).mappings().all()
            assert [(a["actor"], a["calls_released"]) for a in audit] == [("ops-1", 1)]

            started = await client.post(f"/v1/replays?speed={SPEED}", content=TRACE,
                                        headers=headers)
            assert started.status_code == 202, started.text


def test_lag_meter_warns_once_per_episode() -> None:
    from services.softswitch.replay import LagMeter

    class Warned:
        def __init__(self) -> None:
            self.warnings: list[str] = []

        def warn(self, message: str) -> None:
            self.warnings.append(message)

    replay = Warned()
    meter = LagMeter(replay, speed=10, warn_trace_seconds=2.0, window=20, least=5)  # type: ignore[arg-type]
    for _ in range(20):
        meter.sample(0.05)  # 0.5 trace s: fine
    assert not meter.behind and replay.warnings == []
    for _ in range(20):
        meter.sample(0.4)  # 4 trace s: behind
    assert meter.behind and len(replay.warnings) == 1
    assert "falling behind" in replay.warnings[0] and "400 ms" in replay.warnings[0]
    for _ in range(20):
        meter.sample(0.4)
    assert len(replay.warnings) == 1  # one warning per episode
    for _ in range(20):
        meter.sample(0.01)
    assert not meter.behind
    for _ in range(20):
        meter.sample(1.0)
    assert len(replay.warnings) == 2 and meter.view()["episodes"] == 2
