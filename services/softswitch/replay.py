"""The replay engine: one trace driven through the suite, and the switchboard that routes the
switch link's frames to the simulated parties.

A replay is ``running`` while it places the trace's calls at their times, ``draining`` once
the last call is placed (calls end, orders are created and resolved, callbacks settle), then
``finished`` with its report, or ``failed`` if it could not run (CTI unreachable, stopped,
interrupted by a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog

from services.softswitch import repository
from services.softswitch.media import MediaFork
from services.softswitch.parties import (
    AgentSim,
    Caller,
    CallRun,
    CustomerSim,
    HeldCaller,
    OrderRun,
)
from services.softswitch.peers import PeerError, Peers, callback_status, order_id_of
from services.softswitch.replay_clock import ReplayClock
from services.softswitch.report import CallOutcome, OrderOutcome, compute_report
from services.softswitch.settings import SoftswitchSettings
from services.softswitch.switch import Frame, SwitchLink, ws_url
from services.softswitch.trace import CallbackDisposition, LineError, Trace
from shared import switch_frames as frames
from shared.errors import Conflict, NotFound, PeerUnreachable
from shared.service import Service

log = structlog.get_logger(__name__)

ACTIVE_STATES = ("running", "draining")
ORDERS_PER_POLL = 200
MAX_WARNINGS = 100
DEFAULT_RESTORE_SECONDS = 7200.0
SWITCH_TOKEN_TTL = 30 * 24 * 3600


class LagMeter:
    """How long the suite takes to answer the parties, over the latest replies: the first
    prompt after a call is answered, the next prompt (or the queue) after a key is pressed,
    the ACK after an agent answers. Measured in wall seconds, judged in trace seconds (the
    caller's experience): past ``warn_trace_seconds`` at the 90th percentile the suite is
    falling behind the trace, and the replay says so once per episode."""

    def __init__(self, replay: Replay, speed: float, warn_trace_seconds: float,
                 window: int = 200, least: int = 20) -> None:
        self.replay = replay
        self.speed = speed
        self.warn_trace_seconds = warn_trace_seconds
        self._samples: deque[float] = deque(maxlen=window)
        self._least = least
        self.behind = False
        self.episodes = 0
        self.worst_p90 = 0.0

    def sample(self, wall_seconds: float) -> None:
        self._samples.append(wall_seconds)
        if len(self._samples) < self._least:
            return
        p90 = self.p90()
        self.worst_p90 = max(self.worst_p90, p90)
        behind = p90 * self.speed > self.warn_trace_seconds
        if behind and not self.behind:
            self.episodes += 1
            self.replay.warn(
                f"the suite is falling behind: its replies take {p90 * 1000:.0f} ms wall "
                f"({p90 * self.speed:.1f} trace s) at the 90th percentile, over the "
                f"{self.warn_trace_seconds:g} trace s the callers would notice; at speed "
                f"{self.speed:g} the outcome will differ from the trace's (try a lower speed)")
        self.behind = behind

    def p90(self) -> float:
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] if ordered else 0.0

    def view(self) -> dict[str, Any]:
        ordered = sorted(self._samples)
        p50 = ordered[len(ordered) // 2] if ordered else 0.0
        return {"p50_ms": round(p50 * 1000, 1), "p90_ms": round(self.p90() * 1000, 1),
                "p90_trace_seconds": round(self.p90() * self.speed, 2),
                "behind": self.behind, "episodes": self.episodes,
                "worst_p90_ms": round(self.worst_p90 * 1000, 1)}


class Replay:
    def __init__(self, board: Replayer, replay_id: str, name: str | None, speed: float,
                 trace: Trace, errors: list[LineError]) -> None:
        self.board = board
        self.id = replay_id
        self.name = name
        self.speed = speed
        self.trace = trace
        self.errors = errors
        self.settings = board.settings
        self.peers = board.peers
        self.state = "running"
        self.failure: str | None = None
        self.report: dict[str, Any] | None = None
        self.warnings: list[str] = []
        self.created_at: datetime = board.service.now()
        self.finished_at: datetime | None = None
        self.suite_start: datetime = self.created_at
        self.clock = ReplayClock(speed)
        self.lag = LagMeter(self, speed, self.settings.lag_warn_seconds)
        # How late the calls were placed (trace s): the load generator falling behind itself.
        self.placement_late = 0.0
        self.customers = trace.customers_by_number()
        self.runs: dict[str, CallRun] = {}
        self.by_call_id: dict[str, CallRun] = {}
        self.callers: dict[str, Caller] = {}
        for call in trace.calls:
            run = CallRun(spec=call, call_id=f"{replay_id}-{call.id}")
            self.runs[call.id] = run
            self.by_call_id[run.call_id] = run
            self.callers[call.id] = Caller(self, run)
        self.agents = {agent.id: AgentSim(self, agent) for agent in trace.agents}
        self.orders: dict[str, OrderRun] = {}
        # Outages whose restoration is still to come: their orders await resolution.
        self.pending_restores = 0
        self.placed_all = False
        self._busy = 0
        self._changed = 0
        self._dirty: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._task: asyncio.Task[None] | None = None

    # -- plumbing for the parties --------------------------------------------------------

    @property
    def link(self) -> SwitchLink:
        return self.board.link

    def caller_of(self, run: CallRun) -> Caller:
        return self.callers[run.spec.id]

    def spawn(self, coro: Coroutine[Any, Any, Any], *, owner: CallRun | None = None
              ) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        if owner is not None:
            owner.tasks.add(task)
        task.add_done_callback(lambda t: self._reap(t, owner))
        return task

    def _reap(self, task: asyncio.Task[Any], owner: CallRun | None) -> None:
        self._tasks.discard(task)
        if owner is not None:
            owner.tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("replay task failed", replay_id=self.id, error=repr(error),
                      exc_info=error)
            self.warn(f"internal: {error!r}")

    @contextlib.asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    def touch(self, run: CallRun) -> None:
        self._dirty.add(run.spec.id)
        self._changed += 1

    def touch_order(self) -> None:
        self._changed += 1

    def warn(self, message: str) -> None:
        log.warning("replay warning", replay_id=self.id, message=message)
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)

    def media_fork(self, call_id: str, grant: str | None) -> MediaFork | None:
        """The call's audio to recording, with the grant CTI sent in the agent leg's INVITE
        (recording refuses a stream without one)."""
        if not self.settings.media_enabled:
            return None
        if grant is None:
            self.warn(f"call {call_id}: the agent leg's INVITE carried no media grant; "
                      "not recorded")
            return None
        url = ws_url(self.board.common.recording_url, f"/v1/media/{call_id}")
        return MediaFork(url, grant, call_id, self.clock,
                         frame_seconds=self.settings.media_frame_seconds)

    # -- work orders (the agent's desktop during wrap-up) --------------------------------

    async def record_order(self, run: CallRun, agent_id: str) -> None:
        disposition = run.spec.disposition
        assert disposition is not None and disposition.workorder is not None
        wo = disposition.workorder
        customer = self.customers.get(run.spec.from_)
        body: dict[str, Any] = {"type": wo.type, "call_id": run.call_id,
                                "idempotency_key": f"{self.id}:{run.spec.id}"}
        if customer is not None:
            body["customer_account"] = customer.account
        else:
            body["contact_number"] = run.spec.from_
        area = wo.area or (customer.area if customer else None)
        if area:
            body["area"] = area
        try:
            order = await self.peers.create_order(agent_id, body)
        except PeerError as error:
            self.warn(f"call {run.spec.id}: order not created: {error}")
            return
        order_id = order_id_of(order)
        if order_id is None:
            self.warn(f"call {run.spec.id}: order created without an id: {order}")
            return
        run.order_id = order_id
        self.touch(run)
        entry = self.orders.get(order_id)
        if entry is None:
            entry = self.orders[order_id] = OrderRun(order_id)
        entry.calls.append(run.spec.id)
        # Known before resolving, so the callback's INVITE finds its customer.
        self.board.orders[order_id] = (self, entry)
        if order.get("linked") or order.get("outage_id"):
            # A duplicate report of work already under way (an outage, whose restoration
            # resolves it; or an order reopened for rework): the caller joins its callback
            # list and whoever works the order resolves it, not this call. Resolving it here
            # would call back its unhappy callers again on every duplicate report.
            return
        # Our own order: resolved at first contact.
        reply = wo.reply or f"Handled on call {run.spec.id}: {wo.type} resolved."
        try:
            resolved = await self.peers.resolve_order(agent_id, order_id, reply)
        except PeerError as error:
            self.warn(f"call {run.spec.id}: order {order_id} not resolved: {error}")
            return
        if resolved:
            entry.mark_resolved()
        elif not entry.resolved:
            # 409 on an order this replay did not resolve: it is not in a resolvable state,
            # so no callback will follow from this call.
            self.warn(f"call {run.spec.id}: order {order_id} could not be resolved (409)")

    def callback_for(self, order: OrderRun, reported_call_id: Any = None
                     ) -> CallbackDisposition | None:
        """How the called customer behaves: as the trace says for the call the callback is
        about (an order may carry several callers' reports); failing that, its first call's."""
        runs = [self.runs[trace_id] for trace_id in order.calls]
        own = [run.spec for run in runs if run.call_id == reported_call_id]
        for spec in own + [run.spec for run in runs]:
            if spec.disposition is not None and spec.disposition.callback is not None:
                return spec.disposition.callback
        return None

    # -- the timeline --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"replay:{self.id}")

    async def _run(self) -> None:
        persist = asyncio.create_task(self._persist_loop())
        try:
            await self._timeline()
            await self._drain()
            await self._finish()
        except asyncio.CancelledError:
            if self.state in ACTIVE_STATES:
                self.state = "failed"
                self.failure = self.failure or "stopped before it finished"
            raise
        except Exception as error:
            log.exception("replay failed", replay_id=self.id)
            self.state = "failed"
            self.failure = self.failure or f"internal error: {error!r}"
        finally:
            for task in list(self._tasks):
                task.cancel()
            persist.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await persist
            self.finished_at = self.board.service.now()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.board.save(self, final=True))
            self.board.retire(self)

    async def _timeline(self) -> None:
        link = self.board.link
        if not await link.wait_connected(self.settings.connect_timeout_seconds):
            self.failure = f"cannot reach CTI's switch link at {link.url}"
            raise RuntimeError(self.failure)
        try:
            await self.peers.load_customers(self.trace.customers)
        except PeerError as error:
            self.warn(f"customers not loaded: {error}")
        # The clock starts once the switch is reachable, so early calls are not all late.
        self.clock = ReplayClock(self.speed)
        self.suite_start = self.board.service.now()
        for agent in self.agents.values():
            self.spawn(agent.lifecycle())
        for outage in self.trace.outages:
            self.spawn(self._outage(outage))
        for call in self.trace.calls:
            await self.clock.sleep_until(call.at)
            self.placement_late = max(self.placement_late, self.clock.now() - call.at)
            self.spawn(self.callers[call.id].place(), owner=self.runs[call.id])
        self.placed_all = True
        self.state = "draining"

    async def _outage(self, outage: Any) -> None:
        """Post the notice at its time; at ``restore_eta`` (if the trace gives one) report
        power back, which resolves the outage's order for everybody who reported it."""
        restoring = outage.restore_eta is not None
        if restoring:
            self.pending_restores += 1
        try:
            await self.clock.sleep_until(outage.at)
            start = self.suite_start + timedelta(seconds=outage.at)
            eta = outage.restore_eta if restoring else outage.at + DEFAULT_RESTORE_SECONDS
            try:
                posted = await self.peers.post_outage(
                    outage, start, self.suite_start + timedelta(seconds=eta))
            except PeerError as error:
                self.warn(f"outage in {outage.area} not posted: {error}")
                return
            if not restoring:
                return
            await self.clock.sleep_until(outage.restore_eta)
            try:
                restored = await self.peers.restore_outage(str(posted["outage_id"]))
            except PeerError as error:
                self.warn(f"outage in {outage.area} not restored: {error}")
                return
            entry = self.orders.get(str(restored.get("order_id")))
            if entry is not None:
                entry.mark_resolved()
                self.touch_order()
        finally:
            if restoring:
                self.pending_restores -= 1

    def _done(self) -> bool:
        if not self.placed_all or self.pending_restores:
            return False
        for run in self.runs.values():
            if run.ended_at is None or run.order_pending:
                return False
        return all(order.callback.get("settled") for order in self.orders.values()
                   if order.resolved)

    async def _drain(self) -> None:
        timeout = self.settings.drain_timeout_seconds
        idle_since = time.monotonic()
        seen = self._changed
        next_poll = 0.0
        while True:
            now = time.monotonic()
            if now >= next_poll:
                await self.poll_orders()
                next_poll = time.monotonic() + self.settings.settle_poll_seconds
            if self._done():
                return
            if self._busy > 0 or self._changed != seen:
                idle_since, seen = time.monotonic(), self._changed
            elif time.monotonic() - idle_since > timeout:
                self.warn(f"drain timeout: nothing progressed for {timeout:g} s")
                return
            await asyncio.sleep(0.1)

    async def poll_orders(self, *, everything: bool = False) -> None:
        """Read how the resolved orders' callbacks stand, a few hundred orders a request."""
        pending = [o for o in self.orders.values()
                   if o.resolved and (everything or not o.callback.get("settled"))]
        for start in range(0, len(pending), ORDERS_PER_POLL):
            chunk = pending[start:start + ORDERS_PER_POLL]
            found = await self.peers.callbacks_of([order.order_id for order in chunk])
            for order in chunk:
                if order.order_id not in found:
                    continue
                before = order.callback.get("settled")
                order.callback = callback_status({"callbacks": found[order.order_id]})
                if order.callback.get("settled") != before:
                    self._changed += 1

    async def _finish(self) -> None:
        drained = self._done()
        for task in list(self._tasks):
            task.cancel()
        for agent in self.agents.values():
            await agent.logout()
        await self.poll_orders(everything=True)
        self.report = compute_report(self.outcomes(), self.order_outcomes(), drained=drained)
        self.report["warnings"] = len(self.warnings)
        self.report["lag"] = self.lag.view()
        self.report["placement_late_seconds"] = round(self.placement_late, 2)
        self.state = "finished"

    def outcomes(self) -> list[CallOutcome]:
        return [CallOutcome(id=r.spec.id, placed_at=r.placed_at, queued_at=r.queued_at,
                            connected_at=r.connected_at, ended_at=r.ended_at, outcome=r.outcome,
                            talk=r.talk, state=r.state) for r in self.runs.values()]

    def order_outcomes(self) -> list[OrderOutcome]:
        return [OrderOutcome(o.order_id, o.resolved, o.callback) for o in self.orders.values()]

    async def _persist_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.board.save(self)
            except Exception as error:
                log.warning("replay progress not saved", replay_id=self.id, error=repr(error))

    # -- views ---------------------------------------------------------------------------

    def progress(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for run in self.runs.values():
            states[run.state] = states.get(run.state, 0) + 1
        resolved = [o for o in self.orders.values() if o.resolved]
        last = self.trace.calls[-1].at if self.trace.calls else 0.0
        return {
            "calls_total": len(self.runs),
            "placed": sum(1 for r in self.runs.values() if r.placed_at is not None),
            "ended": states.get("ended", 0),
            "in_ivr": states.get("in_ivr", 0) + states.get("setup", 0),
            "in_queue": states.get("queued", 0),
            "ringing": states.get("ringing", 0),
            "talking": states.get("talking", 0),
            "orders_created": len(self.orders),
            "orders_settled": sum(1 for o in resolved if o.callback.get("settled")),
            "orders_awaiting_callbacks": sum(1 for o in resolved
                                             if not o.callback.get("settled")),
            "trace_seconds": round(self.clock.now(), 1) if self.state in ACTIVE_STATES
            else None,
            "trace_span_seconds": last,
            "lag": self.lag.view(),
            "warnings": list(self.warnings),
        }

    def view(self) -> dict[str, Any]:
        return {"replay_id": self.id, "name": self.name,
                "trace_name": self.trace.header.name if self.trace.header else None,
                "speed": self.speed, "state": self.state, "created_at": self.created_at,
                "finished_at": self.finished_at, "failure": self.failure,
                "progress": self.progress(), "errors": [e.as_dict() for e in self.errors],
                "report": self.report}

    def call_rows(self, only: set[str] | None = None) -> list[dict[str, Any]]:
        rows = []
        for trace_id, run in self.runs.items():
            if only is not None and trace_id not in only:
                continue
            order = self.orders.get(run.order_id) if run.order_id else None
            rows.append({"replay_id": self.id, "trace_call_id": trace_id,
                         "call_id": run.call_id, "at": run.spec.at,
                         "placed_at": run.placed_at, "queued_at": run.queued_at,
                         "connected_at": run.connected_at, "ended_at": run.ended_at,
                         "outcome": run.outcome, "agent_id": run.agent_id, "talk": run.talk,
                         "order_id": run.order_id,
                         "callback": order.callback if order and order.callback else None})
        return rows


class Replayer:
    """Owns the switch link, routes its frames, runs and persists replays."""

    def __init__(self, service: Service, settings: SoftswitchSettings) -> None:
        self.service = service
        self.settings = settings
        self.common = settings.common
        self.active: dict[str, Replay] = {}
        self.orders: dict[str, tuple[Replay, OrderRun]] = {}
        self.agent_calls: dict[str, AgentSim] = {}
        self.customer_calls: dict[str, CustomerSim | HeldCaller] = {}
        self._switch_token: str | None = None
        self._link: SwitchLink | None = None
        self._peers: Peers | None = None

    @property
    def peers(self) -> Peers:
        if self._peers is None:
            self._peers = Peers(self.service.http, self.common, self.service.auth)
        return self._peers

    def switch_token(self) -> str:
        if self._switch_token is None:
            auth = self.service.auth
            self._switch_token = auth.mint("softswitch", ["switch"], ttl_seconds=min(
                SWITCH_TOKEN_TTL, auth.max_lifetime_seconds))
        return self._switch_token

    @property
    def link(self) -> SwitchLink:
        if self._link is None:
            self._link = SwitchLink(ws_url(self.common.cti_url, "/v1/switch"), self.switch_token,
                                    self.on_frame,
                                    backoff_min=self.settings.reconnect_min_seconds,
                                    backoff_max=self.settings.reconnect_max_seconds)
        return self._link

    # -- lifecycle -----------------------------------------------------------------------

    async def recover(self) -> None:
        """Replays that were active when the process stopped cannot resume (their calls are
        gone with the switch's connection): mark them failed."""
        async with self.service.sessions() as session, session.begin():
            await repository.abandon_active_replays(
                session, ACTIVE_STATES, now=self.service.now(),
                failure="interrupted: the softswitch stopped while the replay ran")

    async def close(self) -> None:
        for replay in list(self.active.values()):
            replay.failure = "stopped: the softswitch shut down"
            if replay._task is not None:
                replay._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await replay._task
        if self._link is not None:
            await self._link.close()

    async def start(self, trace: Trace, errors: list[LineError], *, speed: float,
                    name: str | None) -> Replay:
        if self.active:
            raise Conflict("a replay is already running: "
                           f"{', '.join(self.active)} (the simulated agents are shared)")
        await self._refuse_leftovers()
        replay_id = f"r{uuid.uuid4().hex[:10]}"
        replay = Replay(self, replay_id, name, speed, trace, errors)
        await self.insert(replay)
        self.active[replay_id] = replay
        self.link.start()
        replay.start()
        return replay

    async def _refuse_leftovers(self) -> None:
        """A replay must not inherit another's calls: its agents would serve callers the trace
        does not know, and the report would count them. Refused while the suite holds any."""
        try:
            left = await self.peers.leftovers()
        except PeerError as error:
            log.warning("could not check for an earlier replay's calls", error=str(error))
            return
        if left["calls"] or left["queued"]:
            raise Conflict(
                f"the suite still holds {len(left['calls'])} live call(s) and "
                f"{len(left['queued'])} queued one(s) from an earlier replay (e.g. "
                f"{', '.join((left['calls'] + left['queued'])[:3])}); end them first with "
                "`hotline replay --reset` (POST /v1/replays/reset)")

    async def reset(self, actor: str) -> dict[str, Any]:
        """Close what earlier replays left in the suite: release every live call (CTI), then
        withdraw the calls still waiting in a queue (callers on virtual hold); audited. 502
        when CTI or the ACD does not answer."""
        if self.active:
            raise Conflict(f"a replay is running ({', '.join(self.active)}): nothing to reset "
                           "until it ends")
        try:
            return await self._reset(actor)
        except (PeerError, httpx.HTTPError) as error:
            raise PeerUnreachable(f"replay reset: {error or type(error).__name__}") from error

    async def _reset(self, actor: str) -> dict[str, Any]:
        released = [call_id for call_id in await self.peers.live_calls()
                    if await self.peers.release_call(call_id)]
        withdrawn: list[str] = []
        # The releases reach the ACD through the bus: give them a moment, then withdraw what
        # still waits (a held caller has no call left to release).
        for _ in range(50):
            left = await self.peers.leftovers()
            if not left["calls"]:
                break
            await asyncio.sleep(0.1)
        for _ in range(50):
            queued = (await self.peers.leftovers())["queued"]
            waiting = [c for c in queued if c not in withdrawn]
            if not waiting:
                break
            for call_id in waiting:
                with contextlib.suppress(PeerError):
                    if await self.peers.withdraw_entry(call_id, f"replay reset by {actor}"):
                        withdrawn.append(call_id)
            await asyncio.sleep(0.1)
        left = await self.peers.leftovers()
        async with self.service.sessions() as session, session.begin():
            await repository.record_reset(session, at=self.service.now(), actor=actor,
                                          released=released, withdrawn=withdrawn)
        log.warning("replay leftovers reset", actor=actor, calls_released=len(released),
                    entries_withdrawn=len(withdrawn))
        return {"calls_released": len(released), "entries_withdrawn": len(withdrawn),
                "left": left}

    def retire(self, replay: Replay) -> None:
        self.active.pop(replay.id, None)
        for order_id in [k for k, (owner, _) in self.orders.items() if owner is replay]:
            self.orders.pop(order_id, None)
        for call_id in [k for k, agent in self.agent_calls.items() if agent.replay is replay]:
            self.agent_calls.pop(call_id, None)
        for call_id in [k for k, c in self.customer_calls.items() if c.replay is replay]:
            self.customer_calls.pop(call_id, None)

    # -- frames from CTI -----------------------------------------------------------------

    def _replay_of(self, call_id: str) -> Replay | None:
        for replay in self.active.values():
            if call_id in replay.by_call_id:
                return replay
        return None

    def _agent(self, invite: frames.OutboundInvite) -> AgentSim | None:
        agent_id = invite.agent_id
        if not agent_id and invite.to_number.startswith("agent:"):
            agent_id = invite.to_number[len("agent:"):]
        replay = self._replay_of(invite.call_id)
        candidates = [replay] if replay is not None else list(self.active.values())
        for owner in candidates:
            if agent_id in owner.agents:
                return owner.agents[agent_id]
        return None

    async def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, frames.ErrorFrame):
            log.warning("error frame from CTI", code=frame.code, message=frame.message,
                        call_id=frame.call_id)
            replay = self._replay_of(frame.call_id or "")
            if replay is not None:
                replay.warn(f"CTI error on {frame.call_id}: {frame.code} {frame.message}")
            return
        if isinstance(frame, frames.Response):
            return  # to a request of ours nobody waits on any more
        call_id, link = frame.call_id, self.link
        if isinstance(frame, frames.OptionsRequest):
            await link.respond(frame, 200 if self._has_call(call_id) else 481)
            return
        if frame.leg == "caller":
            replay = self._replay_of(call_id)
            if replay is None:
                await self._unknown(frame)
                return
            await replay.callers[replay.by_call_id[call_id].spec.id].on_request(frame)
        elif frame.leg == "agent":
            if isinstance(frame, frames.OutboundInvite):
                agent = self._agent(frame)
                if agent is None:
                    await link.respond(frame, 180)
                    await link.respond(frame, 480)
                    return
                self.agent_calls[call_id] = agent
                await agent.on_invite(frame)
                return
            owner = self.agent_calls.get(call_id)
            if owner is None:
                await self._unknown(frame)
                return
            await owner.on_request(frame)
        else:
            if isinstance(frame, frames.OutboundInvite):
                await self._callback_invite(frame)
                return
            customer = self.customer_calls.get(call_id)
            if customer is None or customer.replay is None:
                await self._unknown(frame)
                return
            await customer.on_request(frame)

    def _has_call(self, call_id: str) -> bool:
        """Whether a leg of the call is still up here (what OPTIONS asks)."""
        replay = self._replay_of(call_id)
        if replay is not None and replay.by_call_id[call_id].ended_at is None:
            return True
        agent = self.agent_calls.get(call_id)
        if agent is not None and call_id in agent.legs:
            return True
        customer = self.customer_calls.get(call_id)
        return customer is not None and customer.state != "ended"

    async def _unknown(self, frame: frames.CtiRequest) -> None:
        if frame.method == "ACK":
            return
        if frame.method in ("BYE", "CANCEL"):
            # Hanging up a leg that is already gone is harmless: agree.
            await self.link.respond(frame, 200)
            return
        await self.link.error(frame, "unknown_call", f"no such {frame.leg} leg here")

    async def _callback_invite(self, invite: frames.OutboundInvite) -> None:
        headers = invite.headers
        held_for = headers.get("X-Hotline-Virtual-Hold-For")
        held_replay = self._replay_of(held_for) if held_for else None
        if held_replay is not None and held_for is not None:
            # A caller of this replay who took virtual hold: the agent-first callback.
            held = HeldCaller(held_replay, held_replay.by_call_id[held_for], invite)
            self.customer_calls[held.call_id] = held
            held_replay.spawn(held.ring())
            return
        order_id = headers.get("X-Hotline-Order-Id")
        owner = self.orders.get(order_id) if order_id else None
        if owner is None:
            # Not a customer of any running replay: nobody picks up.
            log.info("callback to an unknown order; not answering", order_id=order_id)
            await self.link.respond(invite, 180)
            await self.link.respond(invite, 480)
            return
        replay, order = owner
        reported = headers.get("X-Hotline-Reported-Call-Id")
        customer = CustomerSim(replay, order, replay.callback_for(order, reported), invite)
        self.customer_calls[customer.call_id] = customer
        replay.spawn(customer.ring())

    # -- persistence ---------------------------------------------------------------------

    async def insert(self, replay: Replay) -> None:
        async with self.service.sessions() as session, session.begin():
            await repository.insert_replay(
                session, replay_id=replay.id, name=replay.name,
                trace_name=replay.trace.header.name if replay.trace.header else None,
                speed=replay.speed, state=replay.state, calls_total=len(replay.runs),
                created_at=replay.created_at, progress=replay.progress(),
                errors=replay.errors, calls=replay.call_rows())

    async def save(self, replay: Replay, *, final: bool = False) -> None:
        dirty = set(replay.runs) if final else set(replay._dirty)
        replay._dirty.clear()
        try:
            async with self.service.sessions() as session, session.begin():
                await repository.save_progress(
                    session, replay.id, state=replay.state, progress=replay.progress(),
                    report=replay.report, failure=replay.failure,
                    finished_at=replay.finished_at, calls=replay.call_rows(dirty))
        except BaseException:
            replay._dirty |= dirty
            raise

    # -- reads ---------------------------------------------------------------------------

    async def list_replays(self) -> list[dict[str, Any]]:
        async with self.service.sessions() as session:
            rows = await repository.list_replays(session)
        out = []
        for row in rows:
            live = self.active.get(row["id"])
            view = live.view() if live else self._row_view(row, [])
            view.pop("errors", None)
            view.pop("report", None)
            out.append(view)
        return out

    async def get(self, replay_id: str) -> dict[str, Any]:
        live = self.active.get(replay_id)
        if live is not None:
            return live.view()
        async with self.service.sessions() as session:
            found = await repository.replay_with_errors(session, replay_id)
        if found is None:
            raise NotFound("replay", replay_id)
        row, errors = found
        return self._row_view(row, [{"line": e["line"], "kind": e["kind"], "error": e["error"]}
                                    for e in errors])

    async def calls(self, replay_id: str) -> list[dict[str, Any]]:
        live = self.active.get(replay_id)
        if live is not None:
            rows = live.call_rows()
        else:
            async with self.service.sessions() as session:
                stored = await repository.calls_of(session, replay_id)
            if stored is None:
                raise NotFound("replay", replay_id)
            rows = stored
        for row in rows:
            row.pop("replay_id", None)
        return rows

    @staticmethod
    def _row_view(row: Any, errors: list[dict[str, Any]]) -> dict[str, Any]:
        return {"replay_id": row["id"], "name": row["name"], "trace_name": row["trace_name"],
                "speed": row["speed"], "state": row["state"], "created_at": row["created_at"],
                "finished_at": row["finished_at"], "failure": row["failure"],
                "progress": row["progress"], "errors": errors, "report": row["report"]}
