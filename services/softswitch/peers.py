"""REST calls the simulator makes to the other services, as the parties it stands in for.

Agents act with an ``agent`` token in their own name (ACD login and state, CTI answer,
work orders from the desktop); loading the trace's reference data (customers, outages) and
reading orders back is an operator's job, done with an ``admin`` token.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
import structlog

from services.softswitch.trace import Agent, Customer, Outage
from shared.auth import Auth
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)

TOKEN_TTL = 7 * 24 * 3600
# Customers per workorder batch (its limit: one transaction each).
CUSTOMER_BATCH = 1_000

# Retries of a disposition post: about 15 s of backoff, longer than a service restart.
DESKTOP_ATTEMPTS = 10
# Rounds over the router replicas: about 10 s, longer than a standby's takeover (< 5 s).
ACD_FAILOVER_ROUNDS = 12
LEFTOVER_CHECK_ROUNDS = 2


class PeerError(RuntimeError):
    pass


# REST calls in flight at once. httpx's connection pool does work per pass in proportion to
# its connections times the requests waiting on them: with hundreds of agents asking at once
# (a storm of missed rings) the replay's own CPU went to the pool, its agents answered too
# late and missed more rings. Waiting on a semaphore costs nothing by comparison. Answers
# (a phone is ringing against a deadline) have their own share, so they never wait behind
# the agents asking to be made ready again.
IN_FLIGHT = 32


class Peers:
    def __init__(self, http: httpx.AsyncClient, common: CommonSettings, auth: Auth,
                 *, operator: str = "softswitch-replay", in_flight: int = IN_FLIGHT) -> None:
        self.http = http
        self._in_flight = asyncio.Semaphore(in_flight)
        self._answers = asyncio.Semaphore(in_flight)
        self.common = common
        self.auth = auth
        self._agent_tokens: dict[str, str] = {}
        # Within the suite's maximum token lifetime, whatever it is set to.
        self.token_ttl = min(TOKEN_TTL, auth.max_lifetime_seconds)
        self._acd_preferred: str | None = None
        self._operator = {"Authorization":
                          f"Bearer {auth.mint(operator, ['admin'], ttl_seconds=self.token_ttl)}"}

    def agent_headers(self, agent_id: str, team: str | None = None) -> dict[str, str]:
        """The agent desktop's token; its first use (the login) names the agent's team,
        which the orders it takes keep."""
        token = self._agent_tokens.get(agent_id)
        if token is None:
            token = self.auth.mint(agent_id, ["agent"], ttl_seconds=self.token_ttl, team=team)
            self._agent_tokens[agent_id] = token
        return {"Authorization": f"Bearer {token}"}

    async def _call(self, method: str, url: str, *, headers: dict[str, str],
                    json: Any = None, attempts: int = 3, ok: tuple[int, ...] = (),
                    answer: bool = False) -> httpx.Response:
        """One REST call, retried on transport errors and 5xx (a peer may be starting or
        briefly overloaded). 4xx is returned at once: retrying would not change it."""
        delay = 0.3
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                async with self._answers if answer else self._in_flight:
                    response = await self.http.request(method, url, json=json,
                                                       headers=headers)
            except httpx.HTTPError as error:
                last = error
            else:
                if response.status_code < 500 or response.status_code in ok:
                    return response
                last = PeerError(f"{method} {url}: {response.status_code} {response.text[:200]}")
            if attempt + 1 < attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise PeerError(f"{method} {url} failed: {last!r}")

    @staticmethod
    def _check(response: httpx.Response, what: str) -> Any:
        if response.status_code >= 400:
            raise PeerError(f"{what}: {response.status_code} {response.text[:300]}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    # -- acd_router ----------------------------------------------------------------------

    async def _acd(self, method: str, path: str, *, json: Any, headers: dict[str, str],
                   rounds: int = ACD_FAILOVER_ROUNDS) -> httpx.Response:
        """A desktop knows every router replica (``HOTLINE_ACD_URL`` may list several,
        comma-separated). It asks the one that answered last first, follows a standby's
        ``active_url`` hint, and keeps trying for a few seconds while a standby takes over."""
        replicas = [url.strip() for url in self.common.acd_url.split(",") if url.strip()]
        last: Exception | None = None
        for round_ in range(rounds):
            order = sorted(replicas, key=lambda url: url != self._acd_preferred)
            while order:
                base = order.pop(0)
                try:
                    response = await self._call(method, base + path, json=json,
                                                headers=headers, attempts=1, ok=(503,))
                except PeerError as error:
                    last = error
                    continue
                if response.status_code != 503:
                    self._acd_preferred = base
                    return response
                try:
                    hint = response.json().get("detail", {})
                except ValueError:
                    hint = {}
                active = hint.get("active_url") if isinstance(hint, dict) else None
                if active and active != base and active not in order:
                    order.insert(0, active)
                last = PeerError(f"{method} {base}{path}: standby")
            await asyncio.sleep(min(0.25 * (round_ + 1), 2.0))
        raise PeerError(f"{method} {path}: no active acd_router answered: {last!r}")

    async def login(self, agent: Agent) -> None:
        body: dict[str, Any] = {"skills": agent.skills, "device": f"agent:{agent.id}"}
        if agent.team is not None:
            body["team"] = agent.team
        response = await self._acd("POST", f"/v1/agents/{agent.id}/login", json=body,
                                   headers=self.agent_headers(agent.id, agent.team))
        self._check(response, f"login of agent {agent.id}")

    async def set_state(self, agent_id: str, state: str, reason: str | None = None
                        ) -> dict[str, Any] | None:
        body: dict[str, Any] = {"state": state}
        if reason is not None:
            body["reason"] = reason
        response = await self._acd("POST", f"/v1/agents/{agent_id}/state", json=body,
                                   headers=self.agent_headers(agent_id))
        view = self._check(response, f"state {state} of agent {agent_id}")
        return view if isinstance(view, dict) else None

    async def agent_state(self, agent_id: str) -> dict[str, Any] | None:
        try:
            response = await self._acd("GET", f"/v1/agents/{agent_id}", json=None,
                                       headers=self.agent_headers(agent_id))
            view = self._check(response, f"agent {agent_id}")
        except PeerError:
            return None
        return view if isinstance(view, dict) else None

    # -- cti_gateway ---------------------------------------------------------------------

    async def answer(self, call_id: str, agent_id: str) -> bool:
        try:
            response = await self._call("POST", f"{self.common.cti_url}/v1/calls/{call_id}/answer",
                                        json={"agent_id": agent_id},
                                        headers=self.agent_headers(agent_id), attempts=1,
                                        answer=True)
        except PeerError as error:
            log.warning("desktop answer failed", call_id=call_id, agent_id=agent_id,
                        error=str(error))
            return False
        if response.status_code >= 300:
            log.warning("desktop answer refused", call_id=call_id, agent_id=agent_id,
                        status=response.status_code, body=response.text[:200])
            return False
        return True

    # -- what an earlier replay left behind (operator) --------------------------------------

    async def leftovers(self) -> dict[str, list[str]]:
        """Calls the suite still holds: live calls in CTI, and calls waiting or reserved in
        the ACD's queues (a caller on virtual hold waits there after their call ended)."""
        entries: list[str] = []
        # A check before a replay starts: it must not hold the request through a whole
        # failover's patience (about 17 s) when the router is down.
        response = await self._acd("GET", "/v1/queues", json=None, headers=self._operator,
                                   rounds=LEFTOVER_CHECK_ROUNDS)
        for queue in self._check(response, "queues") or []:
            if queue.get("waiting") or queue.get("reserved"):
                detail = await self._acd("GET", f"/v1/queues/{queue['queue']}", json=None,
                                         headers=self._operator)
                entries += [e["call_id"] for e in
                            (self._check(detail, f"queue {queue['queue']}") or {})
                            .get("entries", [])]
        return {"calls": await self.live_calls(), "queued": entries}

    async def live_calls(self) -> list[str]:
        url = f"{self.common.cti_url}/v1/calls?live=true&limit=1000"
        response = await self._call("GET", url, headers=self._operator)
        return [c["call_id"] for c in self._check(response, "live calls") or []]

    async def release_call(self, call_id: str) -> bool:
        url = f"{self.common.cti_url}/v1/calls/{call_id}/release"
        response = await self._call("POST", url, json={"agent_id": "replay-reset"},
                                    headers=self._operator)
        return response.status_code < 300

    async def withdraw_entry(self, call_id: str, reason: str) -> bool:
        response = await self._acd("POST", f"/v1/calls/{call_id}/withdraw",
                                   json={"reason": reason}, headers=self._operator)
        return response.status_code < 300

    # -- workorder -----------------------------------------------------------------------

    async def load_customers(self, customers: list[Customer]) -> int:
        if not customers:
            return 0
        rows = [c.model_dump(exclude={"kind"}, exclude_none=True) for c in customers]
        url = f"{self.common.workorder_url}/v1/customers/batch"
        for first in range(0, len(rows), CUSTOMER_BATCH):
            response = await self._call(
                "POST", url, json={"customers": rows[first:first + CUSTOMER_BATCH]},
                headers=self._operator, attempts=5)
            self._check(response, "customer batch")
        return len(rows)

    async def post_outage(self, outage: Outage, start: datetime, restore_eta: datetime | None
                          ) -> dict[str, Any]:
        body: dict[str, Any] = {"area": outage.area, "type": outage.type,
                                "start": start.isoformat()}
        if restore_eta is not None:
            body["restore_eta"] = restore_eta.isoformat()
        response = await self._call("POST", f"{self.common.workorder_url}/v1/outages",
                                    json=body, headers=self._operator)
        data = self._check(response, f"outage in {outage.area}")
        if not isinstance(data, dict) or not data.get("outage_id"):
            raise PeerError(f"outage in {outage.area} posted without an id")
        return data

    async def restore_outage(self, outage_id: str) -> dict[str, Any]:
        """Power is back (the utility's dispatch system says so): workorder resolves the
        outage's repair order and calls back everybody who reported it."""
        url = f"{self.common.workorder_url}/v1/outages/{outage_id}/restore"
        response = await self._call("POST", url, json={}, headers=self._operator,
                                    attempts=DESKTOP_ATTEMPTS)
        data = self._check(response, f"restore of outage {outage_id}")
        return data if isinstance(data, dict) else {}

    async def create_order(self, agent_id: str, body: dict[str, Any]) -> dict[str, Any]:
        # An agent desktop keeps the disposition until workorder is back (a restart takes a
        # few seconds); the idempotency key makes the retries safe.
        response = await self._call("POST", f"{self.common.workorder_url}/v1/orders",
                                    json=body, headers=self.agent_headers(agent_id),
                                    attempts=DESKTOP_ATTEMPTS)
        data = self._check(response, f"order for call {body.get('call_id')}")
        if not isinstance(data, dict):
            raise PeerError("order creation returned no order")
        return data

    async def resolve_order(self, agent_id: str, order_id: str, reply: str) -> bool:
        """True if the order is now resolved by this call; False if it already was (an order
        merged from several calls is resolved by the first agent to finish)."""
        url = f"{self.common.workorder_url}/v1/orders/{order_id}/resolve"
        response = await self._call("POST", url, json={"reply": reply},
                                    headers=self.agent_headers(agent_id),
                                    attempts=DESKTOP_ATTEMPTS)
        if response.status_code == 409:
            return False
        self._check(response, f"resolve order {order_id}")
        return True

    async def callbacks_of(self, order_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The callbacks of many orders in one request (the drain's settlement poll)."""
        url = f"{self.common.workorder_url}/v1/callbacks"
        try:
            async with self._in_flight:
                response = await self.http.get(url, params={"order_ids": ",".join(order_ids),
                                                            "limit": 5000},
                                               headers=self._operator)
        except httpx.HTTPError as error:
            log.warning("callbacks read failed", error=str(error))
            return {}
        if response.status_code >= 400:
            log.warning("callbacks read refused", status=response.status_code)
            return {}
        found: dict[str, list[dict[str, Any]]] = {order_id: [] for order_id in order_ids}
        for callback in response.json():
            found.setdefault(str(callback.get("order_id")), []).append(callback)
        return found


def order_id_of(order: dict[str, Any]) -> str | None:
    value = order.get("order_id") or order.get("id")
    return str(value) if value else None


SETTLED = frozenset({"completed", "unreachable"})
SATISFACTIONS = ("satisfied", "neutral", "dissatisfied")


def callback_status(order: dict[str, Any]) -> dict[str, Any]:
    """Read an order's callbacks (as workorder's ``GET /callbacks`` lists them): one reading
    per task (each resolution owes one to the order's caller and one to every linked
    reporter).

    ``settled`` once the order has callbacks and none is still pending or dialling."""
    callbacks = [_reading(cb) for cb in order.get("callbacks") or [] if isinstance(cb, dict)]
    return {"settled": bool(callbacks) and all(cb["settled"] for cb in callbacks),
            "callbacks": callbacks}


def _reading(callback: dict[str, Any]) -> dict[str, Any]:
    state = str(callback.get("state") or callback.get("status") or "")
    outcome = callback.get("outcome")
    satisfaction = callback.get("satisfaction")
    if satisfaction not in SATISFACTIONS and outcome in SATISFACTIONS:
        satisfaction = outcome
    if state not in SETTLED and outcome == "unreachable":
        state = "unreachable"
    if state not in SETTLED and satisfaction in SATISFACTIONS:
        state = "completed"
    return {"settled": state in SETTLED, "state": state or None,
            "satisfaction": satisfaction if satisfaction in SATISFACTIONS else None,
            "attempts": int(callback.get("attempts") or 0),
            "reporter_id": callback.get("reporter_id"),
            "resolution": int(callback.get("resolution") or 0)}
