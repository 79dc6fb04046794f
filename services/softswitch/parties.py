"""The simulated parties: PSTN callers, agents (phone + desktop) and callback customers.

Each reacts to the frames CTI sends on its leg and acts on the replay clock, as the trace
says the person would. Timers that stand for a person doing something (thinking, letting
the phone ring, talking, wrapping up) run inside ``replay.busy()`` so the drain timeout
only counts time the replay spends waiting on its peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from services.softswitch.media import MediaFork
from services.softswitch.peers import PeerError, Peers
from services.softswitch.replay_clock import ReplayClock
from services.softswitch.settings import SoftswitchSettings
from services.softswitch.switch import Answer, LinkDown, SwitchLink
from services.softswitch.trace import SATISFACTION_DIGITS, Agent, Call, CallbackDisposition
from shared import switch_frames as frames

log = structlog.get_logger(__name__)

DEFAULT_TALK = 60.0


class LagSampler(Protocol):
    def sample(self, wall_seconds: float) -> None: ...


class Stage(Protocol):
    """What the parties need from the replay that runs them
    (:class:`services.softswitch.replay.Replay`)."""

    @property
    def settings(self) -> SoftswitchSettings: ...

    @property
    def peers(self) -> Peers: ...

    @property
    def clock(self) -> ReplayClock: ...

    @property
    def lag(self) -> LagSampler: ...

    @property
    def by_call_id(self) -> dict[str, CallRun]: ...

    @property
    def link(self) -> SwitchLink: ...

    def caller_of(self, run: CallRun) -> Caller: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], *, owner: CallRun | None = None
              ) -> asyncio.Task[Any]: ...

    def busy(self) -> AbstractAsyncContextManager[None]: ...

    def touch(self, run: CallRun) -> None: ...

    def warn(self, message: str) -> None: ...

    def media_fork(self, call_id: str, grant: str | None) -> MediaFork | None: ...

    async def record_order(self, run: CallRun, agent_id: str) -> None: ...


@dataclass
class OrderRun:
    order_id: str
    calls: list[str] = field(default_factory=list)
    resolved: bool = False
    callback: dict[str, Any] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    survey_answers: list[str] = field(default_factory=list)

    def mark_resolved(self) -> None:
        """A resolution owes new callbacks: forget any earlier reading of them."""
        self.resolved, self.callback = True, {}




@dataclass
class CallRun:
    """One trace call as it goes: the caller's state and what the report needs."""

    spec: Call
    call_id: str
    placed_at: float | None = None
    answered_at: float | None = None
    queued_at: float | None = None
    ringing_at: float | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None
    agent_id: str | None = None
    talk: float | None = None
    order_id: str | None = None
    # The agent's phone sent 200: from here the caller no longer abandons.
    agent_answered: bool = False
    order_pending: bool = False
    caller_up: bool = False
    caller_gone: bool = False
    # The caller took a virtual-hold offer: hung up, waiting for the agent-first callback.
    on_hold: bool = False
    dtmf_next: int = 0
    # Wall clock (monotonic) since the caller waits for the suite's reaction, for the lag.
    awaiting_since: float | None = None
    notes: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def state(self) -> str:
        if self.ended_at is not None:
            return "ended"
        if self.placed_at is None:
            return "pending"
        if self.connected_at is not None:
            return "talking"
        if self.ringing_at is not None:
            return "ringing"
        if self.queued_at is not None:
            return "queued"
        if self.answered_at is not None:
            return "in_ivr"
        return "setup"


# A caller's INVITE that hears nothing goes again, up to this many times in all.
INVITE_SENDS = 4


class Caller:
    """The PSTN caller of one trace call (leg ``caller``)."""

    def __init__(self, replay: Stage, run: CallRun) -> None:
        self.replay = replay
        self.run = run
        self._heard = asyncio.Event()  # any answer to the caller's INVITE

    @property
    def link(self) -> Any:
        return self.replay.link

    async def place(self) -> None:
        run = self.run
        run.placed_at = self.replay.clock.now()
        self.replay.touch(run)
        delay = self.replay.settings.invite_retransmit_seconds
        for sent in range(1, INVITE_SENDS + 1):
            try:
                cseq = await self.link.request("INVITE", run.call_id, "caller",
                                               on_response=self._on_invite_response,
                                               **{"from": run.spec.from_, "to": run.spec.to})
            except LinkDown as error:
                self.end("failed", note=f"INVITE not sent: {error}")
                return
            if sent == INVITE_SENDS:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heard.wait(), delay)
            if self._heard.is_set() or run.ended_at is not None:
                return
            self.link.forget(cseq)
            delay *= 2
            self.replay.warn(f"call {run.call_id}: no answer to the INVITE; sent again")

    async def _on_invite_response(self, frame: Answer) -> None:
        run = self.run
        self._heard.set()
        if run.answered_at is not None:
            return  # the answer to a retransmission: the first one was heard
        if isinstance(frame, frames.ErrorFrame):
            self.end("failed", note=f"INVITE refused: {frame.code} {frame.message}")
            return
        status = frame.status
        if status < 200:
            return
        if status >= 300:
            self.end("rejected", note=f"INVITE answered {status} {frame.reason}")
            return
        run.answered_at = self.replay.clock.now()
        run.caller_up = True
        run.awaiting_since = time.monotonic()  # the IVR's first prompt should follow
        self.replay.touch(run)
        await self.link.request("ACK", run.call_id, "caller")

    async def on_request(self, frame: frames.CtiRequest) -> None:
        method = frame.method
        run = self.run
        if method == "ACK":
            return
        if run.awaiting_since is not None:
            self.replay.lag.sample(time.monotonic() - run.awaiting_since)
            run.awaiting_since = None
        await self.link.respond(frame, 200)
        if isinstance(frame, frames.OutboundInfo):
            if frame.play is not None:
                self._on_play(frame.play)
            elif frame.notify is not None:
                self._on_notify(frame.notify)
        elif method in ("BYE", "CANCEL"):
            run.caller_up = False
            run.caller_gone = True
            if run.on_hold:
                return  # the place is kept; the callback decides the outcome
            if run.connected_at is not None:
                # The agent side ended the call; this is CTI tidying the caller leg after it.
                self.end("answered")
            elif run.queued_at is not None:
                self.end("released_in_queue")
            else:
                self.end("self_served")

    def _on_play(self, play: frames.Play) -> None:
        run = self.run
        if play.collect is None:
            return  # an announcement consumes no dtmf entry
        entry = run.spec.dtmf[run.dtmf_next] if run.dtmf_next < len(run.spec.dtmf) else None
        run.dtmf_next += 1
        if entry:
            self.replay.spawn(self._press(entry, self.replay.clock.now() + run.spec.think),
                              owner=run)

    async def _press(self, digits: str, instant: float) -> None:
        async with self.replay.busy():
            await self.replay.clock.sleep_until(instant)
        run = self.run
        # Once the call has left the menu for a queue, a digit meant for the menu is not
        # sent (a switch flushes type-ahead): in the queue it would be taken as the answer
        # to the virtual-hold offer the caller never heard.
        if (run.caller_up and run.ended_at is None and not run.agent_answered
                and run.queued_at is None):
            run.awaiting_since = time.monotonic()  # the next prompt, or the queue
            try:
                await self.link.request("INFO", run.call_id, "caller", dtmf=digits)
            except LinkDown as error:
                # The menu's own timeout takes the caller on, as for digits never heard.
                self.replay.warn(f"call {run.call_id}: digits not sent: {error}")

    def _on_notify(self, notify: frames.Notify) -> None:
        run = self.run
        if notify.event != "queued" or run.queued_at is not None:
            return
        run.queued_at = self.replay.clock.now()
        self.replay.touch(run)
        offer = notify.virtual_hold
        if run.spec.virtual_hold and offer is not None and offer.digit:
            self.replay.spawn(self._hold(offer.digit, run.queued_at + run.spec.think),
                              owner=run)
        if run.spec.patience is not None:
            self.replay.spawn(self._lose_patience(run.queued_at + run.spec.patience), owner=run)

    async def _hold(self, digit: str, instant: float) -> None:
        """Take the virtual-hold offer: from the key press the caller no longer abandons."""
        async with self.replay.busy():
            await self.replay.clock.sleep_until(instant)
        run = self.run
        if run.caller_up and run.ended_at is None and run.ringing_at is None:
            run.on_hold = True
            await self.link.request("INFO", run.call_id, "caller", dtmf=digit)

    async def _lose_patience(self, instant: float) -> None:
        # Not a busy() timer: the caller is waiting on the queue, i.e. on the peers.
        await self.replay.clock.sleep_until(instant)
        run = self.run
        if run.agent_answered or run.on_hold or run.ended_at is not None or not run.caller_up:
            return
        run.caller_up = False
        run.caller_gone = True
        self.end("abandoned", at=instant)
        await self.link.request("BYE", run.call_id, "caller")

    def end(self, outcome: str, *, at: float | None = None, note: str | None = None) -> None:
        run = self.run
        if note:
            run.notes.append(note)
            log.info("call note", call_id=run.call_id, note=note)
        if run.ended_at is not None:
            return
        run.ended_at = self.replay.clock.now() if at is None else at
        run.outcome = outcome
        if outcome != "answered":
            for task in list(run.tasks):
                if task is not asyncio.current_task():
                    task.cancel()
        self.replay.touch(run)


@dataclass
class AgentLeg:
    call_id: str
    invite: frames.OutboundInvite
    run: CallRun | None
    # ringing -> answered (200 sent) -> connected (ACK) -> ended
    state: str = "ringing"
    connected_at: float | None = None
    media: MediaFork | None = None
    answered_wall: float | None = None


class AgentSim:
    """An agent: the phone on leg ``agent`` and the desktop's REST calls."""

    def __init__(self, replay: Stage, spec: Agent) -> None:
        self.replay = replay
        self.spec = spec
        self.id = spec.id
        self.logged_in = False
        self.logged_out = False
        self.legs: dict[str, AgentLeg] = {}
        self.calls_handled = 0

    async def lifecycle(self) -> None:
        replay = self.replay
        await replay.clock.sleep_until(self.spec.login)
        try:
            await replay.peers.login(self.spec)
            await replay.peers.set_state(self.id, "ready")
        except PeerError as error:
            replay.warn(f"agent {self.id} could not log in: {error}")
            return
        self.logged_in = True
        if self.spec.logout is not None:
            await replay.clock.sleep_until(self.spec.logout)
            await self.logout()

    async def logout(self) -> None:
        if not self.logged_in or self.logged_out:
            return
        self.logged_out = True
        try:
            # ACD keeps a logout pending while the agent is on a call.
            await self.replay.peers.set_state(self.id, "logged_out", "end of shift")
        except PeerError as error:
            self.replay.warn(f"agent {self.id} logout failed: {error}")

    # -- phone ---------------------------------------------------------------------------

    async def on_invite(self, frame: frames.OutboundInvite) -> None:
        replay = self.replay
        call_id = frame.call_id
        # An agent-first callback rings on a call of its own, for the held caller's call.
        run = replay.by_call_id.get(frame.virtual_hold_for or call_id)
        leg = AgentLeg(call_id, frame, run)
        self.legs[call_id] = leg
        await replay.link.respond(frame, 180)
        now = replay.clock.now()
        if run is not None:
            run.agent_id = self.id
            run.ringing_at = now
            # A call reserved straight from the IVR without a queued notify entered the
            # queue when ACD picked the agent.
            if run.queued_at is None:
                run.queued_at = now
            replay.touch(run)
        replay.spawn(self._answer_later(leg, now + self.spec.answer_after), owner=run)

    async def _answer_later(self, leg: AgentLeg, instant: float) -> None:
        replay = self.replay
        async with replay.busy():
            await replay.clock.sleep_until(instant)
            if leg.state != "ringing":
                return
            answered = await replay.peers.answer(leg.call_id, self.id)
            if answered and leg.state == "ringing":
                # CTI now sends INFO control=answer; if it never does, pick up anyway.
                await asyncio.sleep(replay.settings.ack_grace_seconds)
        if leg.state == "ringing":
            if answered:
                replay.warn(f"call {leg.call_id}: no INFO control=answer after the desktop "
                            "answered; the phone answers by itself")
            await self._pick_up(leg)

    async def _pick_up(self, leg: AgentLeg) -> None:
        if leg.state != "ringing":
            return
        leg.state = "answered"
        leg.answered_wall = time.monotonic()
        if leg.run is not None:
            leg.run.agent_answered = True
        await self.replay.link.respond(leg.invite, 200)
        self.replay.spawn(self._ack_grace(leg), owner=leg.run)

    async def _ack_grace(self, leg: AgentLeg) -> None:
        await asyncio.sleep(self.replay.settings.ack_grace_seconds)
        if leg.state == "answered":
            self.replay.warn(f"call {leg.call_id}: no ACK for the agent leg; counted connected")
            self._connected(leg)

    def _connected(self, leg: AgentLeg) -> None:
        replay = self.replay
        leg.state = "connected"
        at = replay.clock.now()
        leg.connected_at = at
        talk = leg.run.spec.talk if leg.run is not None else DEFAULT_TALK
        end = at + talk
        # A caller who gave up while the phone was answering is not connected to anyone:
        # there is no bridge, so nothing to fork to the recorder either.
        bridged = leg.run is None or leg.run.ended_at is None
        if bridged and leg.run is not None:
            leg.run.connected_at = at
            leg.run.agent_id = self.id
            replay.touch(leg.run)
        leg.media = replay.media_fork(leg.call_id, leg.invite.media_grant) if bridged else None
        if leg.media is not None:
            leg.media.start(at, planned_end=end)
        replay.spawn(self._talk(leg, end), owner=leg.run)

    async def _talk(self, leg: AgentLeg, end: float) -> None:
        async with self.replay.busy():
            await self.replay.clock.sleep_until(end)
        if leg.state != "connected":
            return
        await self._hang_up(leg, end, send_bye=True)

    async def _hang_up(self, leg: AgentLeg, at: float, *, send_bye: bool) -> None:
        replay = self.replay
        leg.state = "ended"
        self.legs.pop(leg.call_id, None)
        if leg.media is not None:
            replay.spawn(leg.media.stop(at))
        run = leg.run
        # Settle the outcome before the BYE goes out: CTI's BYE of the caller leg may come
        # back while this one is still being sent.
        if run is not None:
            if leg.connected_at is not None and run.connected_at is not None:
                run.talk = at - leg.connected_at
                replay.caller_of(run).end("answered", at=at)
                if run.spec.disposition and run.spec.disposition.workorder:
                    run.order_pending = True
            elif run.ended_at is None:
                # CTI took the agent leg away before the caller was bridged (its reservation
                # was withdrawn as the phone answered): the caller still waits for an agent;
                # CTI's BYE of the caller leg, if it comes, decides the outcome.
                run.agent_answered = False
                run.ringing_at = None
                replay.touch(run)
        if send_bye:
            try:
                await replay.link.request("BYE", leg.call_id, "agent")
            except LinkDown as error:
                replay.warn(f"call {leg.call_id}: agent BYE not sent: {error}")
        self.calls_handled += 1
        replay.spawn(self._wrap_up(run, at + self.spec.wrapup), owner=None)

    async def _wrap_up(self, run: CallRun | None, ready_at: float) -> None:
        replay = self.replay
        async with replay.busy():
            if run is not None and run.order_pending:
                try:
                    await replay.record_order(run, self.id)
                finally:
                    run.order_pending = False
                    replay.touch(run)
            await replay.clock.sleep_until(ready_at)
        if self.logged_in and not self.logged_out and not self.legs:
            try:
                await replay.peers.set_state(self.id, "ready")
            except PeerError as error:
                log.info("agent ready after wrap-up refused", agent_id=self.id, error=str(error))

    async def _ready_after_missed_ring(self) -> None:
        """A ring that stopped before the agent answered may have made the ACD put them in
        not ready (ring no answer). A real agent notices and makes themselves ready again,
        as a desktop's auto-ready does, after a pause. The ring failure may reach the ACD
        after that request (a late suite), so the agent looks again and asks until the ACD
        has them back, or they are on another call."""
        replay = self.replay
        async with replay.busy():
            await replay.clock.sleep(replay.settings.missed_ring_ready_seconds)
        pause = 1.0
        for attempt in range(replay.settings.missed_ring_ready_attempts):
            if not self.logged_in or self.logged_out or self.legs:
                return
            try:
                view = await replay.peers.set_state(self.id, "ready")
            except PeerError as error:
                log.info("agent ready after a missed ring refused", agent_id=self.id,
                         error=str(error))
                view = None
            if attempt + 1 < replay.settings.missed_ring_ready_attempts:
                # Look again a little later (longer each time: a late suite is a busy one).
                async with replay.busy():
                    await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)
                view = await replay.peers.agent_state(self.id)
            if view is not None and view.get("state") != "not_ready":
                return

    async def on_request(self, frame: frames.CtiRequest) -> None:
        method = frame.method
        call_id = frame.call_id
        leg = self.legs.get(call_id)
        replay = self.replay
        if method == "ACK":
            if leg is not None and leg.state == "answered":
                if leg.answered_wall is not None:
                    replay.lag.sample(time.monotonic() - leg.answered_wall)
                self._connected(leg)
            return
        await replay.link.respond(frame, 200)
        if leg is None:
            return
        if isinstance(frame, frames.OutboundInfo):
            if frame.control == "answer":
                await self._pick_up(leg)
        elif method == "CANCEL":
            if leg.state == "ringing":
                leg.state = "ended"
                self.legs.pop(call_id, None)
                await replay.link.respond(leg.invite, 487)
                if leg.run is not None and leg.run.ringing_at is not None:
                    leg.run.ringing_at = None
                    replay.touch(leg.run)
                replay.spawn(self._ready_after_missed_ring(), owner=None)
        elif method == "BYE":
            if leg.state == "ringing":
                leg.state = "ended"
                self.legs.pop(call_id, None)
                replay.spawn(self._ready_after_missed_ring(), owner=None)
            elif leg.state in ("answered", "connected"):
                await self._hang_up(leg, replay.clock.now(), send_bye=False)


class HeldCaller:
    """A caller on virtual hold answering the agent-first callback (leg ``customer``). The
    agent already waits on the line; the agent's side ends the call."""

    def __init__(self, replay: Stage, run: CallRun, frame: frames.OutboundInvite) -> None:
        self.replay: Stage | None = replay
        self.run = run
        self.invite = frame
        self.call_id = frame.call_id
        # ringing -> up -> ended
        self.state = "ringing"

    async def ring(self) -> None:
        replay = self.replay
        assert replay is not None
        await replay.link.respond(self.invite, 180)
        async with replay.busy():
            await replay.clock.sleep(self.run.spec.think)
        if self.state == "ringing":
            self.state = "up"
            await replay.link.respond(self.invite, 200)

    async def on_request(self, frame: frames.CtiRequest) -> None:
        replay = self.replay
        assert replay is not None
        if frame.method == "ACK":
            return
        await replay.link.respond(frame, 200)
        if frame.method == "CANCEL" and self.state == "ringing":
            await replay.link.respond(self.invite, 487)
        if frame.method in ("BYE", "CANCEL"):
            self.state = "ended"


class CustomerSim:
    """A customer's phone receiving a callback (leg ``customer``)."""

    def __init__(self, replay: Stage | None, order: OrderRun | None,
                 callback: CallbackDisposition | None, frame: frames.OutboundInvite) -> None:
        self.replay = replay
        self.order = order
        self.callback = callback
        self.invite = frame
        self.call_id = frame.call_id
        try:
            self.attempt = int(frame.headers.get("X-Hotline-Attempt") or 1)
        except (TypeError, ValueError):
            self.attempt = 1
        # ringing -> up -> ended
        self.state = "ringing"
        self.answered_digit: str | None = None

    @property
    def will_answer(self) -> bool:
        cb = self.callback
        return (cb is not None and cb.answer_on_attempt is not None
                and self.attempt >= cb.answer_on_attempt)

    async def ring(self) -> None:
        replay = self.replay
        assert replay is not None
        settings = replay.settings
        await replay.link.respond(self.invite, 180)
        delay = settings.customer_answer_seconds if self.will_answer \
            else settings.customer_ring_seconds
        async with replay.busy():
            await replay.clock.sleep(delay)
        if self.state != "ringing":
            return
        if self.order is not None:
            self.order.attempts.append({"attempt": self.attempt,
                                        "answered": self.will_answer})
        if self.will_answer:
            self.state = "up"
            await replay.link.respond(self.invite, 200)
            replay.spawn(self._hang_up_eventually())
        else:
            self.state = "ended"
            await replay.link.respond(self.invite, 480)

    async def _hang_up_eventually(self) -> None:
        replay = self.replay
        assert replay is not None
        await replay.clock.sleep(replay.settings.customer_max_call_seconds)
        if self.state == "up":
            self.state = "ended"
            await replay.link.request("BYE", self.call_id, "customer")

    async def on_request(self, frame: frames.CtiRequest) -> None:
        replay = self.replay
        assert replay is not None
        method = frame.method
        if method == "ACK":
            return
        await replay.link.respond(frame, 200)
        if isinstance(frame, frames.OutboundInfo):
            play = frame.play
            if play is not None and play.collect is not None and self.callback is not None:
                digit = SATISFACTION_DIGITS[self.callback.satisfaction]
                replay.spawn(self._press(digit))
        elif method == "CANCEL":
            if self.state == "ringing":
                self.state = "ended"
                await replay.link.respond(self.invite, 487)
        elif method == "BYE":
            self.state = "ended"

    async def _press(self, digit: str) -> None:
        replay = self.replay
        assert replay is not None
        async with replay.busy():
            await replay.clock.sleep(replay.settings.survey_think_seconds)
        if self.state == "up":
            self.answered_digit = digit
            if self.order is not None:
                self.order.survey_answers.append(digit)
            await replay.link.request("INFO", self.call_id, "customer", dtmf=digit)
