"""The IVR session state machine: a menu interpreter driven by caller input and time.

Sans-IO: every call takes ``now``; the no-input timeout comes back as ``state.deadline`` for
the caller of this module to fire; a node that needs outside data (the outage check) stops
with ``Step.need`` and continues when :meth:`Interpreter.provide` is given the answer.

States::

    (start) --> collecting --digits/timeout--> collecting | waiting | completed
                waiting    --provide---------> collecting | waiting | completed
                collecting | waiting --hangup--> completed
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from pydantic import BaseModel

from services.ivr_engine.domain.menu import (
    AnnounceNode,
    BalanceNode,
    CollectingNode,
    Menu,
    MenuNode,
    Node,
    OutageCheckNode,
    ReleaseNode,
    RouteNode,
    Satisfaction,
    SurveyNode,
)

Status = Literal["collecting", "waiting", "completed"]
Outcome = Literal["routed", "self_served", "caller_hung_up", "survey"]
Purpose = Literal["inbound", "survey"]

# Each legal (status, action); anything else is an illegal transition.
TRANSITIONS: dict[Status, frozenset[str]] = {
    "collecting": frozenset({"digits", "timeout", "hangup", "recover"}),
    "waiting": frozenset({"provide", "hangup", "recover"}),
    "completed": frozenset(),
}
MAX_HOPS = 100


class IllegalTransition(Exception):
    def __init__(self, status: str, action: str) -> None:
        allowed = sorted(TRANSITIONS.get(status, frozenset()))  # type: ignore[call-overload]
        super().__init__(f"ivr session in state {status!r} cannot {action}")
        self.status = status
        self.action = action
        self.allowed = allowed


class Customer(BaseModel):
    account: str
    name: str | None = None
    tier: str = "regular"
    area: str | None = None
    flags: list[str] = []
    balance: float | None = None


class Outage(BaseModel):
    area: str | None = None
    type: str | None = None
    restore_eta: datetime | None = None


class Input(BaseModel):
    node: str | None
    digits: str | None
    # valid, invalid, no_input, stale (answered an earlier prompt)
    result: str
    at: datetime


class RouteTarget(BaseModel):
    queue: str
    skills: list[str]
    priority: int
    customer: Customer | None = None
    from_number: str | None = None


class SessionState(BaseModel):
    session_id: str
    call_id: str
    purpose: Purpose
    menu: str
    menu_version: int
    status: Status = "collecting"
    node: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    customer: Customer | None = None
    # Outbound survey calls: what the originator attached (order, callback, attempt ...).
    context: dict[str, Any] = {}
    attempts: int = 0
    prompt_seq: int = 0
    # Sequence number of the prompt now collecting digits; older answers are stale.
    collect_seq: int = 0
    deadline: datetime | None = None
    path: list[str] = []
    inputs: list[Input] = []
    facts: dict[str, Any] = {}
    outcome: Outcome | None = None
    route: RouteTarget | None = None
    satisfaction: Satisfaction | None = None
    started_at: datetime
    ended_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.status != "completed"


# -- effects: what the edge must turn into events ------------------------------------------


@dataclass(frozen=True)
class Collect:
    max_digits: int
    timeout_seconds: float


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    text: str
    collect: Collect | None = None


@dataclass(frozen=True)
class Completed:
    outcome: Outcome
    path: list[str]
    route: RouteTarget | None = None


@dataclass(frozen=True)
class ReleaseCall:
    reason: str


@dataclass(frozen=True)
class SurveyAnswered:
    satisfaction: Satisfaction | None
    context: dict[str, Any]


Effect = Prompt | Completed | ReleaseCall | SurveyAnswered


@dataclass(frozen=True)
class NeedOutages:
    """Stop until the active outages in ``area`` are provided."""

    area: str


@dataclass
class Step:
    effects: list[Effect] = field(default_factory=list)
    need: NeedOutages | None = None
    # Why an input changed nothing (stale digits, timeout not yet due).
    ignored: str | None = None


def prompt_seq_of(prompt_id: str | None) -> int | None:
    if not prompt_id or ":" not in prompt_id:
        return None
    try:
        return int(prompt_id.rsplit(":", 1)[1])
    except ValueError:
        return None


class Interpreter:
    def __init__(self, menu: Menu, *, tz: tzinfo = UTC, min_timeout_seconds: float = 0.0
                 ) -> None:
        self.menu = menu
        self.tz = tz
        # The no-input deadline is at least this far off (the edge's wall-time floor).
        self.min_timeout_seconds = min_timeout_seconds

    # -- inputs ------------------------------------------------------------------------------

    def start(self, *, session_id: str, call_id: str, now: datetime, purpose: Purpose = "inbound",
              from_number: str | None = None, to_number: str | None = None,
              customer: Customer | None = None, context: dict[str, Any] | None = None
              ) -> tuple[SessionState, Step]:
        entry = self.menu.start if purpose == "inbound" else self.menu.survey
        if entry is None:
            raise ValueError(f"menu {self.menu.name!r} has no survey node")
        state = SessionState(session_id=session_id, call_id=call_id, purpose=purpose,
                             menu=self.menu.name, menu_version=self.menu.version,
                             from_number=from_number, to_number=to_number, customer=customer,
                             context=dict(context or {}), started_at=now)
        step = Step()
        self._enter(state, entry, now, step)
        return state, step

    def digits(self, state: SessionState, digits: str, now: datetime,
               prompt_id: str | None = None) -> Step:
        self._require(state, "digits")
        step = Step()
        seq = prompt_seq_of(prompt_id)
        if seq is not None and seq < state.collect_seq:
            state.inputs.append(Input(node=state.node, digits=digits, result="stale", at=now))
            step.ignored = f"digits answer earlier prompt {prompt_id}"
            return step
        node = self._collecting_node(state)
        # Extra digits in one burst are type-ahead beyond what the prompt collects.
        entry = digits[:node.max_digits]
        if isinstance(node, MenuNode):
            target = node.options.get(entry)
            if target is not None:
                state.inputs.append(Input(node=state.node, digits=entry, result="valid", at=now))
                self._enter(state, target, now, step)
                return step
        else:
            satisfaction = node.options.get(entry)
            if satisfaction is not None:
                state.inputs.append(Input(node=state.node, digits=entry, result="valid", at=now))
                self._finish_survey(state, node, satisfaction, now, step)
                return step
        state.inputs.append(Input(node=state.node, digits=entry, result="invalid", at=now))
        self._failed_attempt(state, node, "invalid", now, step)
        return step

    def timeout(self, state: SessionState, now: datetime) -> Step:
        self._require(state, "timeout")
        step = Step()
        if state.deadline is None or now < state.deadline:
            step.ignored = "no-input timeout not yet due"
            return step
        node = self._collecting_node(state)
        state.inputs.append(Input(node=state.node, digits=None, result="no_input", at=now))
        self._failed_attempt(state, node, "no_input", now, step)
        return step

    def provide(self, state: SessionState, outages: list[Outage], now: datetime) -> Step:
        self._require(state, "provide")
        node = self.menu.nodes.get(state.node or "")
        if not isinstance(node, OutageCheckNode):
            raise IllegalTransition(state.status, "provide")
        step = Step()
        # The latest restore time is when the caller's supply is back.
        known = [o for o in outages if o.restore_eta is not None]
        outage = max(known, key=lambda o: o.restore_eta or now) if known else (
            outages[0] if outages else None)
        if outage is not None:
            state.facts["outage"] = outage.model_dump(mode="json")
            self._prompt(state, "outage", node.prompt, None, step)
        else:
            state.facts["outage"] = None
            if node.no_outage_prompt is not None:
                self._prompt(state, "no_outage", node.no_outage_prompt, None, step)
        state.status = "collecting"
        self._enter(state, node.next, now, step)
        return step

    def hangup(self, state: SessionState, now: datetime) -> Step:
        self._require(state, "hangup")
        step = Step()
        self._complete(state, "caller_hung_up", now, step)
        return step

    def recover(self, state: SessionState, now: datetime) -> Step:
        """The session's node is gone from the menu (it changed under a running session):
        hand the caller to the menu's fallback route rather than strand them."""
        self._require(state, "recover")
        step = Step()
        self._enter(state, self.menu.fallback, now, step)
        return step

    def can_continue(self, state: SessionState) -> bool:
        return state.node is not None and state.node in self.menu.nodes

    # -- the walk ----------------------------------------------------------------------------

    def _require(self, state: SessionState, action: str) -> None:
        if action not in TRANSITIONS[state.status]:
            raise IllegalTransition(state.status, action)

    def _collecting_node(self, state: SessionState) -> CollectingNode:
        node = self.menu.nodes.get(state.node or "")
        if not isinstance(node, MenuNode | SurveyNode):
            raise IllegalTransition(state.status, "collect")
        return node

    def _enter(self, state: SessionState, node_id: str, now: datetime, step: Step) -> None:
        for _ in range(MAX_HOPS):
            node: Node = self.menu.nodes[node_id]
            state.node = node_id
            state.path.append(node_id)
            state.attempts = 0
            state.deadline = None
            if isinstance(node, AnnounceNode):
                self._prompt(state, node_id, node.prompt, None, step)
                node_id = node.next
            elif isinstance(node, BalanceNode):
                customer = state.customer
                if customer is None or customer.balance is None:
                    node_id = node.on_unknown
                else:
                    self._prompt(state, node_id, node.prompt, None, step)
                    node_id = node.next
            elif isinstance(node, OutageCheckNode):
                area = state.customer.area if state.customer else None
                if area is None:
                    # Without an area there is nothing to look up; go on as if none.
                    state.facts["outage"] = None
                    node_id = node.next
                else:
                    state.status = "waiting"
                    step.need = NeedOutages(area)
                    return
            elif isinstance(node, MenuNode | SurveyNode):
                state.status = "collecting"
                self._ask(state, node, node.prompt, now, step)
                return
            elif isinstance(node, RouteNode):
                if node.prompt is not None:
                    self._prompt(state, node_id, node.prompt, None, step)
                state.route = RouteTarget(queue=node.queue, skills=list(node.skills),
                                          priority=self._priority(node, state.customer),
                                          customer=state.customer,
                                          from_number=state.from_number)
                self._complete(state, "routed", now, step)
                return
            elif isinstance(node, ReleaseNode):
                if node.prompt is not None:
                    self._prompt(state, node_id, node.prompt, None, step)
                self._complete(state, "self_served", now, step)
                step.effects.append(ReleaseCall(node.reason))
                return
            else:  # pragma: no cover - the menu model admits no other node
                raise TypeError(f"unhandled node type {type(node).__name__}")
        raise RuntimeError(f"menu {self.menu.name!r} walked {MAX_HOPS} nodes without input")

    def _failed_attempt(self, state: SessionState, node: CollectingNode,
                        kind: Literal["invalid", "no_input"], now: datetime, step: Step) -> None:
        if kind == "no_input" and isinstance(node, MenuNode) and node.on_no_input is not None:
            self._enter(state, node.on_no_input, now, step)
            return
        state.attempts += 1
        if state.attempts < self.menu.attempts_for(node):
            self._ask(state, node, node.retry_prompt or node.prompt, now, step)
        elif isinstance(node, MenuNode):
            self._enter(state, node.on_failure, now, step)
        else:
            self._finish_survey(state, node, None, now, step)

    def _ask(self, state: SessionState, node: CollectingNode, text: str, now: datetime,
             step: Step) -> None:
        timeout = self.menu.timeout_for(node)
        prompt = self._prompt(state, state.node or "", text,
                              Collect(max_digits=node.max_digits, timeout_seconds=timeout), step)
        state.collect_seq = prompt_seq_of(prompt.prompt_id) or state.prompt_seq
        state.deadline = now + timedelta(seconds=max(timeout, self.min_timeout_seconds))

    def _prompt(self, state: SessionState, label: str, text: str, collect: Collect | None,
                step: Step) -> Prompt:
        state.prompt_seq += 1
        prompt = Prompt(prompt_id=f"{label}:{state.prompt_seq}", text=self._render(text, state),
                        collect=collect)
        step.effects.append(prompt)
        return prompt

    def _finish_survey(self, state: SessionState, node: SurveyNode,
                       satisfaction: Satisfaction | None, now: datetime, step: Step) -> None:
        state.satisfaction = satisfaction
        if node.thanks_prompt is not None:
            self._prompt(state, state.node or "", node.thanks_prompt, None, step)
        step.effects.append(SurveyAnswered(satisfaction, dict(state.context)))
        self._complete(state, "survey", now, step)
        step.effects.append(ReleaseCall("survey_completed"))

    def _complete(self, state: SessionState, outcome: Outcome, now: datetime, step: Step) -> None:
        state.status = "completed"
        state.outcome = outcome
        state.deadline = None
        state.ended_at = now
        step.effects.append(Completed(outcome, list(state.path),
                                      state.route if outcome == "routed" else None))

    def _priority(self, node: RouteNode, customer: Customer | None) -> int:
        if customer is not None:
            if customer.tier in node.tier_priority:
                return node.tier_priority[customer.tier]
            if customer.tier in self.menu.tier_priority:
                return self.menu.tier_priority[customer.tier]
        return node.priority

    def _render(self, text: str, state: SessionState) -> str:
        customer = state.customer
        outage = state.facts.get("outage") or {}
        values = {
            "name": (customer.name if customer else None) or "",
            "account": customer.account if customer else "",
            "tier": customer.tier if customer else "",
            "area": (customer.area if customer else None) or "",
            "balance": (f"{customer.balance:.2f}"
                        if customer is not None and customer.balance is not None else "unknown"),
            "restore_eta": self._eta_text(outage.get("restore_eta"), state),
            "outage_type": outage.get("type") or "",
        }
        return text.format_map(values)

    def _eta_text(self, eta: str | None, state: SessionState) -> str:
        if not eta:
            return "as soon as possible"
        when = datetime.fromisoformat(eta).astimezone(self.tz)
        return when.strftime("%H:%M") if when.date() == state.started_at.astimezone(
            self.tz).date() else when.strftime("%Y-%m-%d %H:%M")
