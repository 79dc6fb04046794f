"""A supervisor directs and reads the agents of its team or department only (the token's
``team`` / ``department`` claims); one naming neither oversees the whole floor. An agent
acts for itself and may not move itself to another team."""

from __future__ import annotations

from typing import Any

import pytest

from shared.auth import Auth
from shared.settings import CommonSettings
from tests.acd_router.harness import Harness, acd_running

# Every command or read that names one agent, with a body it accepts (409 is an answer: the
# agent is not on a call to set a next state or extend a wrap-up for).
AGENT_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "login", {"skills": {"repair": 8}}),
    ("POST", "state", {"state": "ready"}),
    ("POST", "next-state", {"state": "not_ready"}),
    ("POST", "wrapup/extend", {}),
    ("POST", "force", {"state": "logged_out", "reason": "end of shift"}),
    ("GET", "", None),
    ("GET", "audit", None),
]


def supervisor(acd: Harness, **oversight: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + acd.auth.mint("S-" + "-".join(oversight.values()),
                                                       ["supervisor"], **oversight)}


async def floor(acd: Harness) -> None:
    """A001 in T1 and A002 in T2, both of department D1, placed by a duty manager."""
    for agent_id, team in (("A001", "T1"), ("A002", "T2")):
        response = await acd.client.post(
            f"/v1/agents/{agent_id}/login", headers=supervisor(acd),
            json={"skills": {"repair": 8}, "team": team, "department": "D1"})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(("oversight", "allowed"), [
    ({"team": "T1"}, True),
    ({"team": "T2"}, False),
    ({"department": "D1"}, True),
    ({"department": "D2"}, False),
    ({}, True),
])
async def test_a_supervisor_acts_on_the_agents_of_its_team_or_department_only(
        common: CommonSettings, auth: Auth, oversight: dict[str, str], allowed: bool) -> None:
    async with acd_running(common, auth) as acd:
        await floor(acd)
        headers = supervisor(acd, **oversight)
        for method, tail, body in AGENT_ROUTES:
            path = f"/v1/agents/A001/{tail}".rstrip("/")
            response = await acd.client.request(method, path, headers=headers, json=body)
            if allowed:
                assert response.status_code in (200, 409), (path, response.text)
            else:
                assert response.status_code == 403, (path, response.text)
                assert "oversees" in response.json()["detail"]["message"]
        board = await acd.client.get("/v1/agents", headers=headers)
        assert [a["agent_id"] for a in board.json()] == (
            ["A001", "A002"] if allowed and "team" not in oversight
            else ["A001"] if allowed else ["A002"] if oversight.get("team") == "T2" else [])
        # Nothing a refused supervisor asked for happened.
        agent = (await acd.client.get("/v1/agents/A001", headers=supervisor(acd))).json()
        assert agent["state"] == ("logged_out" if allowed else "not_ready")
        assert (agent["team"], agent["department"]) == ("T1", "D1")


async def test_a_team_supervisor_cannot_move_an_agent_out_of_its_team(
        common: CommonSettings, auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        await floor(acd)
        response = await acd.client.post(
            "/v1/agents/A001/login", headers=supervisor(acd, team="T1"),
            json={"skills": {"repair": 8}, "team": "T2"})
        assert response.status_code == 403, response.text
        # A new agent it logs in joins its team, not another.
        response = await acd.client.post(
            "/v1/agents/A003/login", headers=supervisor(acd, team="T1"),
            json={"skills": {"repair": 8}, "team": "T3"})
        assert response.status_code == 403, response.text
        response = await acd.client.post(
            "/v1/agents/A003/login", headers=supervisor(acd, team="T1"),
            json={"skills": {"repair": 8}, "team": "T1"})
        assert response.status_code == 200 and response.json()["team"] == "T1"
        assert (await acd.agent("A001"))["team"] == "T1"


async def test_an_agent_names_its_team_at_its_first_login_and_keeps_it(
        common: CommonSettings, auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        first = await acd.login("A001", ready=False)  # the harness's login names T1
        assert first["team"] == "T1"
        await acd.set_state("A001", "logged_out")
        again = await acd.client.post("/v1/agents/A001/login", headers=acd.headers_of("A001"),
                                      json={"skills": {"repair": 8}})
        assert again.status_code == 200 and again.json()["team"] == "T1"
        await acd.set_state("A001", "logged_out")
        moved = await acd.client.post("/v1/agents/A001/login", headers=acd.headers_of("A001"),
                                      json={"skills": {"repair": 8}, "team": "T2"})
        assert moved.status_code == 403 and "team" in moved.json()["detail"]["message"]
        assert (await acd.agent("A001"))["state"] == "logged_out"
        # Its own state stays its own to set.
        await acd.client.post("/v1/agents/A001/login", headers=acd.headers_of("A001"),
                              json={"skills": {"repair": 8}})
        assert (await acd.set_state("A001", "ready"))["state"] == "ready"


async def test_a_reservation_names_the_agents_team_for_the_calls_records(
        common: CommonSettings, auth: Auth) -> None:
    """CTI keeps the team and department on the call and on cti.call.connected / released,
    and the recording keeps them: their supervisors read those records."""
    async with acd_running(common, auth) as acd:
        await floor(acd)
        await acd.set_state("A001", "ready")
        await acd.route_call("C1")
        reserved = await acd.wait_for("acd.agent.reserved", call_id="C1")
        assert (reserved.data["agent_id"], reserved.data["team"],
                reserved.data["department"]) == ("A001", "T1", "D1")
