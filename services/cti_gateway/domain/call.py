"""The call state machine (sans-IO).

A :class:`Call` is plain data; every operation takes ``now``, checks the transition table,
mutates the call and returns the effects the edge must carry out: events to record in the
outbox (:class:`Emit`) and requests to send to the switch once the state is durable
(:class:`Send`). Illegal operations raise :class:`~shared.errors.IllegalTransition` and leave
the call untouched. Inputs that merely no longer apply (a late response to an INVITE that was
cancelled, an expiry for another reservation) return no effects instead of raising, because
they are normal on an asynchronous wire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from shared.errors import IllegalTransition
from shared.events import EventData
from shared.events.cti import (
    AgentAlerting,
    AgentRingFailed,
    CallAnswered,
    CallConnected,
    CallOffered,
    CallOriginated,
    CallReleased,
    DtmfReceived,
)
from shared.transitions import Transitions

Leg = Literal["caller", "agent", "customer"]
Method = Literal["INVITE", "ACK", "BYE", "CANCEL", "INFO"]
Direction = Literal["inbound", "outbound"]


class CallState(StrEnum):
    OFFERED = "offered"
    IN_IVR = "in_ivr"
    QUEUED = "queued"
    ALERTING = "alerting"
    CONNECTED = "connected"
    DIALING = "dialing"
    RELEASED = "released"


class Action(StrEnum):
    ANSWER = "answer"  # inbound: answered into the IVR
    PLAY = "play"
    ANNOUNCE = "announce"  # a message without input (a queue limit's, before the release)
    DTMF = "dtmf"
    QUEUE = "queue"
    RING = "ring"  # INVITE the reserved agent's device
    AGENT_RINGING = "agent_ringing"
    REQUEST_ANSWER = "request_answer"  # desktop answer: INFO control=answer
    RING_FAILED = "ring_failed"
    CONNECT = "connect"
    AGENT_ANSWERED = "agent_answered"  # agent-first dial: the agent is up, dial the customer
    CUSTOMER_ANSWERED = "customer_answered"
    CANCEL = "cancel"  # the caller gave up before the call was answered
    RELEASE = "release"


class LegState(StrEnum):
    NONE = "none"
    INVITED = "invited"  # INVITE sent, no provisional response yet
    RINGING = "ringing"
    UP = "up"
    GONE = "gone"


S, A = CallState, Action

# (state, action) -> next state. Self-loops mark operations that are legal but change nothing
# in the state (a prompt, a digit, a new queue position), so that the table alone answers
# "what may happen to a call in this state".
TRANSITIONS: Transitions[CallState, Action, CallState] = Transitions("call", {
    (S.OFFERED, A.ANSWER): S.IN_IVR,
    (S.OFFERED, A.CANCEL): S.RELEASED,
    (S.OFFERED, A.RELEASE): S.RELEASED,
    (S.IN_IVR, A.PLAY): S.IN_IVR,
    (S.IN_IVR, A.DTMF): S.IN_IVR,
    (S.IN_IVR, A.QUEUE): S.QUEUED,
    # ACD may reserve an agent before CTI has seen the queued event.
    (S.IN_IVR, A.RING): S.ALERTING,
    # The switch may still CANCEL if its caller hung up before our 200 reached it.
    (S.IN_IVR, A.CANCEL): S.RELEASED,
    (S.IN_IVR, A.RELEASE): S.RELEASED,
    (S.QUEUED, A.QUEUE): S.QUEUED,
    # A key pressed while waiting: ACD's virtual-hold digit.
    (S.QUEUED, A.DTMF): S.QUEUED,
    (S.IN_IVR, A.ANNOUNCE): S.IN_IVR,
    (S.QUEUED, A.ANNOUNCE): S.QUEUED,
    (S.QUEUED, A.RING): S.ALERTING,
    (S.QUEUED, A.RELEASE): S.RELEASED,
    (S.ALERTING, A.AGENT_RINGING): S.ALERTING,
    (S.ALERTING, A.REQUEST_ANSWER): S.ALERTING,
    (S.ALERTING, A.RING_FAILED): S.QUEUED,
    (S.ALERTING, A.CONNECT): S.CONNECTED,
    (S.ALERTING, A.RELEASE): S.RELEASED,
    (S.CONNECTED, A.RELEASE): S.RELEASED,
    # An agent-first dial (virtual hold) starts ringing the agent, then dials the customer.
    (S.ALERTING, A.AGENT_ANSWERED): S.DIALING,
    (S.DIALING, A.CONNECT): S.CONNECTED,
    (S.DIALING, A.CUSTOMER_ANSWERED): S.IN_IVR,
    (S.DIALING, A.RELEASE): S.RELEASED,
})

LIVE_STATES = frozenset(s for s in CallState if s is not CallState.RELEASED)


def allowed_actions(state: CallState) -> list[str]:
    return TRANSITIONS.allowed(state)


def next_state(state: CallState, action: Action) -> CallState:
    """The target of ``action`` from ``state``; raises if the table has no such edge."""
    return TRANSITIONS.target(state, action)


@dataclass(frozen=True)
class Emit:
    event: EventData

    @property
    def type(self) -> str:
        return str(self.event.event_type)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Send:
    """A request to the switch. ``cseq`` is set only on INVITEs, whose responses the call
    must match later; the edge numbers every other request as it sends it, so the numbers
    stay increasing per sender as the contract asks (even ACK and CANCEL get their own)."""

    method: Method
    leg: Leg
    fields: dict[str, Any] = field(default_factory=dict)
    cseq: int | None = None


Effect = Emit | Send

# Final responses to an agent INVITE -> ring_failed reason. 487 is the answer to our own
# CANCEL, already accounted for when we sent it.
AGENT_FAILURES: dict[int, str] = {408: "no_answer", 480: "no_answer", 486: "rejected",
                                  600: "rejected", 603: "rejected"}
CUSTOMER_FAILURES: dict[int, str] = {408: "no_answer", 480: "no_answer", 486: "busy",
                                     600: "busy", 603: "rejected"}
REQUEST_TERMINATED = 487


@dataclass
class Call:
    call_id: str
    direction: Direction
    state: CallState
    from_number: str
    to_number: str
    offered_at: datetime
    switch_id: str | None = None
    party_leg: LegState = LegState.NONE
    agent_leg: LegState = LegState.NONE
    agent_id: str | None = None
    agent_device: str | None = None
    # The agent's team and department (from its reservation): whose supervisors see the call.
    team: str | None = None
    department: str | None = None
    reservation_id: str | None = None
    queue: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    last_prompt_id: str | None = None
    request_id: str | None = None
    party_invite_cseq: int | None = None
    agent_invite_cseq: int | None = None
    ring_deadline: datetime | None = None
    answered_at: datetime | None = None
    connected_at: datetime | None = None
    released_at: datetime | None = None
    cause: str | None = None

    # -- queries ---------------------------------------------------------------------------

    @property
    def party(self) -> Leg:
        """The leg the call is about: the PSTN caller inbound, the customer outbound."""
        return "caller" if self.direction == "inbound" else "customer"

    @property
    def live(self) -> bool:
        return self.state is not CallState.RELEASED

    def carried_by(self, switch_id: str) -> None:
        """Another connection of the same switch carries the call from now on."""
        self.switch_id = switch_id

    def handled_by(self, agent_id: str | None) -> bool:
        """The call rings or is connected to this agent."""
        return agent_id is not None and self.agent_id == agent_id

    @property
    def agent_first(self) -> bool:
        """A virtual-hold dial: the agent is rung first, then the customer is dialled."""
        return "virtual_hold_for" in self.context

    def allowed(self) -> list[str]:
        return allowed_actions(self.state)

    def _go(self, action: Action) -> CallState:
        """Move along the table; return the state we left."""
        previous = self.state
        self.state = next_state(previous, action)
        return previous

    # -- inbound ---------------------------------------------------------------------------

    @classmethod
    def offer(cls, call_id: str, from_number: str, to_number: str, now: datetime, *,
              switch_id: str | None = None) -> tuple[Call, list[Effect]]:
        """An INVITE from the PSTN: create the call and answer it straight into the IVR."""
        call = cls(call_id=call_id, direction="inbound", state=CallState.OFFERED,
                   from_number=from_number, to_number=to_number, offered_at=now,
                   switch_id=switch_id, party_leg=LegState.RINGING)
        effects: list[Effect] = [Emit(CallOffered(
            call_id=call_id, direction="inbound", from_number=from_number, to_number=to_number,
            offered_at=now))]
        effects += call.answer_into_ivr(now)
        return call, effects

    def answer_into_ivr(self, now: datetime) -> list[Effect]:
        self._go(Action.ANSWER)
        self.party_leg = LegState.UP
        self.answered_at = now
        return [Emit(self._answered())]

    def receive_dtmf(self, digits: str) -> list[Effect]:
        self._go(Action.DTMF)
        return [Emit(DtmfReceived(call_id=self.call_id, digits=digits,
                                  prompt_id=self.last_prompt_id))]

    def play(self, prompt_id: str, text: str, collect: dict[str, Any] | None) -> list[Effect]:
        self._go(Action.PLAY)
        self.last_prompt_id = prompt_id
        return [Send("INFO", self.party,
                     {"play": {"prompt_id": prompt_id, "text": text, "collect": collect}})]

    def announce(self, prompt_id: str, text: str) -> list[Effect]:
        """Tell the caller something, expecting no input; unlike an IVR prompt, also while
        the call waits in a queue."""
        self._go(Action.ANNOUNCE)
        return [Send("INFO", self.party,
                     {"play": {"prompt_id": prompt_id, "text": text, "collect": None}})]

    def enqueue(self, queue: str, position: int, estimated_wait_seconds: float | None,
                virtual_hold_digit: str | None = None) -> list[Effect]:
        """The switch tells the caller their place and wait; with ``virtual_hold_digit`` it
        also offers a callback that keeps the place (the caller presses that key)."""
        self._go(Action.QUEUE)
        self.queue = queue
        notify: dict[str, Any] = {"event": "queued", "queue": queue, "position": position,
                                  "estimated_wait_seconds": estimated_wait_seconds}
        if virtual_hold_digit is not None:
            notify["virtual_hold"] = {"digit": virtual_hold_digit}
        return [Send("INFO", self.party, {"notify": notify})]

    def ring_agent(self, agent_id: str, device: str, reservation_id: str, queue: str | None,
                   now: datetime, *, ring_timeout: float, invite_cseq: int,
                   team: str | None = None, department: str | None = None) -> list[Effect]:
        """ACD reserved an agent: INVITE its device and arm the no-answer timer."""
        self._go(Action.RING)
        self.agent_id = agent_id
        self.agent_device = device
        self.team, self.department = team, department
        self.reservation_id = reservation_id
        self.queue = queue or self.queue
        self.agent_leg = LegState.INVITED
        self.agent_invite_cseq = invite_cseq
        self.ring_deadline = now + timedelta(seconds=ring_timeout)
        return [Send("INVITE", "agent", {
            "agent_id": agent_id, "to": device, "from": self.from_number,
            "reservation_id": reservation_id}, cseq=invite_cseq)]

    def request_answer(self, agent_id: str) -> list[Effect]:
        """The agent answered on the desktop: tell the phone to pick up."""
        next_state(self.state, Action.REQUEST_ANSWER)
        if agent_id != self.agent_id:
            raise IllegalTransition(
                "call", self.state.value,
                f"be answered by agent {agent_id!r} (it rings agent {self.agent_id!r})",
                self.allowed())
        return [Send("INFO", "agent", {"control": "answer"})]

    def on_agent_response(self, cseq: int, status: int, now: datetime, *,
                          next_cseq: Callable[[], int] | None = None,
                          dial_timeout: float = 0.0) -> list[Effect]:
        """The switch's response to our agent INVITE. Responses to an earlier ring (one we
        already cancelled or gave up on) are ignored. An agent-first dial goes on to INVITE
        the customer (``next_cseq`` numbers it; ``dial_timeout`` bounds its ringing)."""
        if self.state is not CallState.ALERTING or cseq != self.agent_invite_cseq:
            # A repeated 200 for the phone already answered (connected, or on an agent-first
            # dial waiting for the customer) is not a late answer to hang up.
            retransmitted = cseq == self.agent_invite_cseq and (
                self.connected_at is not None or self.agent_leg is LegState.UP)
            if 200 <= status < 300 and not retransmitted:
                # The phone picked up an INVITE we had already given up on (the 200 crossed
                # our CANCEL): take the answer and hang up, or the phone stays off-hook.
                return [Send("ACK", "agent"), Send("BYE", "agent")]
            return []
        if status == 180:
            if self.agent_leg is not LegState.INVITED:
                return []  # a repeated 180: ACD has been told already
            self._go(Action.AGENT_RINGING)
            self.agent_leg = LegState.RINGING
            return [Emit(AgentAlerting(call_id=self.call_id, agent_id=self.agent_id or "",
                                       reservation_id=self.reservation_id or ""))]
        if 200 <= status < 300:
            if self.agent_first:
                if next_cseq is None:
                    raise ValueError("an agent-first dial needs a CSeq for the customer INVITE")
                return self._dial_customer(now, next_cseq(), dial_timeout)
            return self._connect(now)
        if status < 300 or status == REQUEST_TERMINATED:
            return []
        self.agent_leg = LegState.GONE
        return self._ring_failed(AGENT_FAILURES.get(status, "unreachable"), now, cancel=False)

    def _dial_customer(self, now: datetime, invite_cseq: int, dial_timeout: float
                       ) -> list[Effect]:
        """The agent of an agent-first dial picked up: they hear the customer's phone ring."""
        self._go(Action.AGENT_ANSWERED)
        self.agent_leg = LegState.UP
        self.party_leg = LegState.INVITED
        self.party_invite_cseq = invite_cseq
        self.ring_deadline = now + timedelta(seconds=dial_timeout)
        return [Send("ACK", "agent"),
                Send("INVITE", "customer", {"from": self.from_number, "to": self.to_number,
                                            "headers": {"X-Hotline-Virtual-Hold-For":
                                                        self.context["virtual_hold_for"]}},
                     cseq=invite_cseq)]

    def _connect(self, now: datetime, answered: Leg = "agent") -> list[Effect]:
        """The last leg answered (the agent; on an agent-first dial, the customer)."""
        self._go(Action.CONNECT)
        if answered == "agent":
            self.agent_leg = LegState.UP
        else:
            self.party_leg = LegState.UP
            self.answered_at = now
        self.connected_at = now
        self.ring_deadline = None
        return [
            Send("ACK", answered),
            Emit(CallConnected(
                call_id=self.call_id, direction=self.direction, agent_id=self.agent_id or "",
                queue=self.queue, reservation_id=self.reservation_id,
                from_number=self.from_number, to_number=self.to_number, connected_at=now,
                team=self.team, department=self.department)),
        ]

    def check_ring_timeout(self, now: datetime) -> list[Effect]:
        """Called by the timer: the agent (or an agent-first dial's customer) did not answer
        in time."""
        if self.ring_deadline is None or self.ring_deadline > now:
            return []
        if self.state is CallState.ALERTING:
            return self._ring_failed("no_answer", now, cancel=True)
        if self.state is CallState.DIALING and self.agent_first:
            return self.release("no_answer", now)
        return []

    def withdraw_ring(self, reservation_id: str, now: datetime) -> list[Effect]:
        """ACD expired the reservation: stop ringing. ACD knows already, so no ring-failed
        event; an agent-first dial has nobody else on it and ends."""
        if reservation_id != self.reservation_id:
            return []
        if self.agent_first and self.state in (CallState.ALERTING, CallState.DIALING):
            return self.release("reservation_expired", now)
        if self.state is not CallState.ALERTING:
            return []
        self._go(Action.RING_FAILED)
        self._clear_agent()
        return [Send("CANCEL", "agent")]

    def _ring_failed(self, reason: str, now: datetime, *, cancel: bool) -> list[Effect]:
        event = Emit(AgentRingFailed(call_id=self.call_id, agent_id=self.agent_id or "",
                                     reservation_id=self.reservation_id or "",
                                     reason=reason))
        if self.agent_first:
            # Nobody else is on an agent-first dial: it ends with the ring (CANCELling the
            # agent's phone if it still rings).
            return [event, *self.release(f"agent_{reason}", now)]
        self._go(Action.RING_FAILED)
        self._clear_agent()
        effects: list[Effect] = [Send("CANCEL", "agent")] if cancel else []
        return [*effects, event]

    def _clear_agent(self) -> None:
        """The call waits again; the next reservation starts from a clean agent leg."""
        self.agent_id = self.agent_device = self.reservation_id = None
        self.team = self.department = None
        self.agent_leg = LegState.NONE
        self.agent_invite_cseq = None
        self.ring_deadline = None

    def reservation_too_late(self, agent_id: str, reservation_id: str) -> list[Effect]:
        """A reservation for a call that has already ended: hand the agent back to ACD."""
        if self.live:
            raise IllegalTransition("call", self.state.value, "be too late for", self.allowed())
        return [Emit(AgentRingFailed(call_id=self.call_id, agent_id=agent_id,
                                     reservation_id=reservation_id, reason="caller_gone"))]

    # -- outbound --------------------------------------------------------------------------

    @classmethod
    def dial_agent_first(cls, call_id: str, *, held_call_id: str, agent_id: str, device: str,
                         reservation_id: str, queue: str, from_number: str, to_number: str,
                         switch_id: str, invite_cseq: int, now: datetime,
                         ring_timeout: float, team: str | None = None,
                         department: str | None = None) -> tuple[Call, list[Effect]]:
        """A caller on virtual hold reached an agent: ring the agent on a new outbound call
        (showing the customer's number); the customer is dialled once the agent picks up."""
        call = cls(call_id=call_id, direction="outbound", state=CallState.ALERTING,
                   from_number=from_number, to_number=to_number, offered_at=now,
                   switch_id=switch_id, context={"virtual_hold_for": held_call_id},
                   request_id=reservation_id, agent_id=agent_id, agent_device=device,
                   reservation_id=reservation_id, queue=queue, agent_leg=LegState.INVITED,
                   team=team, department=department,
                   agent_invite_cseq=invite_cseq,
                   ring_deadline=now + timedelta(seconds=ring_timeout))
        return call, [
            Send("INVITE", "agent", {"agent_id": agent_id, "to": device, "from": to_number,
                                     "reservation_id": reservation_id,
                                     "virtual_hold_for": held_call_id}, cseq=invite_cseq),
            Emit(CallOriginated(call_id=call_id, request_id=reservation_id,
                                from_number=from_number, to_number=to_number,
                                context=call.context)),
        ]

    @classmethod
    def originate(cls, call_id: str, *, request_id: str, from_number: str, to_number: str,
                  context: dict[str, Any], headers: dict[str, str], switch_id: str,
                  invite_cseq: int, now: datetime) -> tuple[Call, list[Effect]]:
        call = cls(call_id=call_id, direction="outbound", state=CallState.DIALING,
                   from_number=from_number, to_number=to_number, offered_at=now,
                   switch_id=switch_id, party_leg=LegState.INVITED, context=dict(context),
                   request_id=request_id, party_invite_cseq=invite_cseq)
        return call, [
            Send("INVITE", "customer", {"from": from_number, "to": to_number,
                                        "headers": dict(headers)}, cseq=invite_cseq),
            Emit(CallOriginated(call_id=call_id, request_id=request_id, from_number=from_number,
                                to_number=to_number, context=call.context)),
        ]

    def on_customer_response(self, cseq: int, status: int, now: datetime) -> list[Effect]:
        if self.state is not CallState.DIALING or cseq != self.party_invite_cseq:
            retransmitted = cseq == self.party_invite_cseq and self.answered_at is not None
            if 200 <= status < 300 and not retransmitted:
                return [Send("ACK", "customer"), Send("BYE", "customer")]
            return []
        if 100 <= status < 200:
            if status in (180, 183):
                self.party_leg = LegState.RINGING
            return []
        if status < 300 and self.agent_first:
            return self._connect(now, answered="customer")
        if status < 300:
            self._go(Action.CUSTOMER_ANSWERED)
            self.party_leg = LegState.UP
            self.answered_at = now
            return [Send("ACK", "customer"), Emit(self._answered())]
        if status == REQUEST_TERMINATED:
            return []  # our CANCEL went through; the release was recorded then
        self.party_leg = LegState.GONE
        # The customer's INVITE is over; an agent-first dial's agent is still on the line.
        return self.release(CUSTOMER_FAILURES.get(status, "error"), now,
                            notify_switch=self.agent_first)

    # -- the end ---------------------------------------------------------------------------

    def cancel(self, leg: Leg, now: datetime) -> list[Effect]:
        """CANCEL from the switch on the caller leg: the caller gave up before answer."""
        if leg != "caller" or self.direction != "inbound":
            raise IllegalTransition("call", self.state.value, f"be cancelled on a {leg} leg",
                                    self.allowed())
        return self.release("cancelled", now, hung_up=leg, action=Action.CANCEL)

    def release(self, cause: str, now: datetime, *, hung_up: Leg | None = None,
                notify_switch: bool = True, action: Action = Action.RELEASE) -> list[Effect]:
        """End the call. Every other leg that is still up gets a BYE (or a CANCEL while it
        is only ringing), unless the switch itself is gone."""
        previous = self._go(action)
        effects: list[Effect] = []
        legs: list[tuple[Leg, LegState]] = [(self.party, self.party_leg),
                                             ("agent", self.agent_leg)]
        for leg, state in legs:
            if leg == hung_up or state in (LegState.NONE, LegState.GONE):
                continue
            if notify_switch:
                effects.append(Send("BYE" if state is LegState.UP else "CANCEL", leg))
        if self.party_leg is not LegState.NONE:
            self.party_leg = LegState.GONE
        if self.agent_leg is not LegState.NONE:
            self.agent_leg = LegState.GONE
        self.released_at = now
        self.cause = cause
        self.ring_deadline = None
        talk = (now - self.connected_at).total_seconds() if self.connected_at else None
        effects.append(Emit(CallReleased(
            call_id=self.call_id, direction=self.direction, cause=cause, state=previous.value,
            agent_id=self.agent_id, from_number=self.from_number, to_number=self.to_number,
            context=self.context, connected_at=self.connected_at, released_at=now,
            talk_seconds=talk, team=self.team, department=self.department)))
        return effects

    def _answered(self) -> CallAnswered:
        return CallAnswered(call_id=self.call_id, direction=self.direction,
                            from_number=self.from_number, to_number=self.to_number,
                            context=self.context)


HANGUP_CAUSES: dict[str, str] = {"caller": "caller_hangup", "customer": "customer_hangup",
                                 "agent": "agent_hangup"}


def hangup(call: Call, leg: Leg, now: datetime) -> list[Effect]:
    """BYE from the switch on one leg. Only a leg that is up can hang up: a phone that will
    not answer rejects the INVITE instead, and a ringing caller CANCELs. The one exception:
    a BYE on the dialled party's leg while its answer is awaited means the answer was lost
    (with a CTI process that died holding it); the party has come and gone, so the call
    ends rather than waiting for an answer that will not come."""
    if leg == "agent":
        up = call.agent_leg is LegState.UP
    else:
        up = leg == call.party and (
            call.party_leg is LegState.UP
            or (call.direction == "outbound"
                and call.party_leg in (LegState.INVITED, LegState.RINGING)))
    if not up:
        raise IllegalTransition("call", call.state.value, f"be hung up on its {leg} leg",
                                call.allowed())
    return call.release(HANGUP_CAUSES[leg], now, hung_up=leg)
