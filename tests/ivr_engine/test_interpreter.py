"""The menu interpreter, table-driven over the bundled 95598 menu (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.ivr_engine.app import load_menus
from services.ivr_engine.domain import (
    Completed,
    Customer,
    IllegalTransition,
    Interpreter,
    Outage,
    Prompt,
    ReleaseCall,
    SessionState,
    Step,
    SurveyAnswered,
)
from services.ivr_engine.settings import IvrSettings
from shared.settings import CommonSettings

T0 = datetime(2026, 7, 15, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
MENU = load_menus(IvrSettings(common=CommonSettings())).default

REGULAR = Customer(account="3100000001", name="Li", tier="regular", area="A-017", balance=88.5)
VIP = Customer(account="3100000002", name="Wang", tier="vip", area="A-017", balance=-12.0)
NO_AREA = Customer(account="3100000003", tier="regular", balance=None)


@dataclass
class Run:
    state: SessionState
    effects: list[Any] = field(default_factory=list)

    @property
    def prompts(self) -> list[Prompt]:
        return [e for e in self.effects if isinstance(e, Prompt)]

    @property
    def completed(self) -> Completed:
        done = [e for e in self.effects if isinstance(e, Completed)]
        assert len(done) == 1, self.effects
        return done[0]


def drive(inputs: list[str | None], *, customer: Customer | None = None,
          outages: list[Outage] | None = None, purpose: str = "inbound",
          context: dict[str, Any] | None = None) -> Run:
    """Play ``inputs`` (digits, or None for a no-input timeout) into a fresh session."""
    interpreter = Interpreter(MENU, tz=ZoneInfo("Asia/Shanghai"))
    now = T0
    state, step = interpreter.start(session_id="S1", call_id="C1", now=now,
                                     purpose=purpose,  # type: ignore[arg-type]
                                     from_number="+8613800000001", to_number="95598",
                                     customer=customer, context=context)
    run = Run(state)

    def absorb(step: Step) -> None:
        while True:
            run.effects.extend(step.effects)
            if step.need is None:
                return
            step = interpreter.provide(state, outages or [], now)

    absorb(step)
    for entry in inputs:
        assert state.running, f"session ended before input {entry!r}: {run.effects}"
        if entry is None:
            assert state.deadline is not None
            now = state.deadline
            absorb(interpreter.timeout(state, now))
        else:
            now += timedelta(seconds=2)
            absorb(interpreter.digits(state, entry, now))
    return run


OUTAGE = Outage(area="A-017", type="fault", restore_eta=T0 + timedelta(hours=2, minutes=10))


@pytest.mark.parametrize(
    ("name", "inputs", "customer", "outcome", "queue", "priority", "path"),
    [
        ("outage, regular", ["1"], REGULAR, "routed", "repair", 0,
         ["main", "outage", "to_repair"]),
        ("outage, vip", ["1"], VIP, "routed", "repair", 10, ["main", "outage", "to_repair"]),
        ("outage, unknown caller", ["1"], None, "routed", "repair", 0,
         ["main", "outage", "to_repair"]),
        ("new connection", ["3"], REGULAR, "routed", "billing", 0, ["main", "to_new_connection"]),
        ("complaint, regular", ["9"], REGULAR, "routed", "complaint", 0,
         ["main", "to_complaint"]),
        ("complaint, vip green channel", ["9"], VIP, "routed", "complaint", 20,
         ["main", "to_complaint"]),
        ("agent", ["0"], REGULAR, "routed", "billing", 0, ["main", "to_billing"]),
        ("agent, vip", ["0"], VIP, "routed", "billing", 10, ["main", "to_billing"]),
        ("invalid twice", ["7", "8"], REGULAR, "routed", "billing", 0, ["main", "to_billing"]),
        ("no input twice", [None, None], REGULAR, "routed", "billing", 0,
         ["main", "to_billing"]),
        ("invalid then no input", ["#", None], None, "routed", "billing", 0,
         ["main", "to_billing"]),
        ("invalid then valid", ["5", "9"], REGULAR, "routed", "complaint", 0,
         ["main", "to_complaint"]),
        ("billing, then agent", ["2", "0"], REGULAR, "routed", "billing", 0,
         ["main", "balance", "balance_more", "to_billing"]),
        ("billing, no input: self-served", ["2", None], REGULAR, "self_served", None, None,
         ["main", "balance", "balance_more", "goodbye"]),
        ("billing, invalid twice", ["2", "5", "6"], REGULAR, "routed", "billing", 0,
         ["main", "balance", "balance_more", "to_billing"]),
        ("billing, unknown caller", ["2"], None, "routed", "billing", 0,
         ["main", "balance", "to_billing"]),
        ("billing, no balance known", ["2"], NO_AREA, "routed", "billing", 0,
         ["main", "balance", "to_billing"]),
    ],
)
def test_inbound_branches(name: str, inputs: list[str | None], customer: Customer | None,
                          outcome: str, queue: str | None, priority: int | None,
                          path: list[str]) -> None:
    run = drive(inputs, customer=customer)
    assert not run.state.running
    done = run.completed
    assert done.outcome == outcome
    assert done.path == path
    if queue is None:
        assert done.route is None
        assert run.effects[-1] == ReleaseCall("self_served")
    else:
        assert done.route is not None
        assert (done.route.queue, done.route.skills, done.route.priority) == (
            queue, [queue], priority)
        assert done.route.customer == customer
        assert done.route.from_number == "+8613800000001"
        assert not any(isinstance(e, ReleaseCall) for e in run.effects)


def test_first_prompt_collects_with_deadline() -> None:
    run = drive([])
    [prompt] = run.prompts
    assert prompt.collect is not None and prompt.collect.max_digits == 1
    assert prompt.collect.timeout_seconds == 6
    assert run.state.status == "collecting"
    assert run.state.deadline == T0 + timedelta(seconds=6)


def test_outage_is_announced_with_local_restore_time() -> None:
    run = drive(["1"], customer=REGULAR, outages=[OUTAGE])
    announce = run.prompts[1]
    assert announce.collect is None
    assert "restored by 11:10" in announce.text
    assert run.state.facts["outage"]["area"] == "A-017"


def test_outage_check_without_outage_says_nothing() -> None:
    run = drive(["1"], customer=REGULAR, outages=[])
    assert len(run.prompts) == 1
    assert run.state.facts["outage"] is None


def test_balance_is_announced_before_the_agent_menu() -> None:
    run = drive(["2", "0"], customer=VIP)
    texts = [p.text for p in run.prompts]
    assert "balance of -12.00 yuan" in texts[1]
    assert run.prompts[1].collect is None and run.prompts[2].collect is not None


def test_retry_prompt_after_invalid_entry() -> None:
    run = drive(["4"], customer=REGULAR)
    assert run.state.running and run.state.attempts == 1
    assert run.prompts[-1].text.startswith("Sorry")
    assert run.state.collect_seq == 2


@pytest.mark.parametrize(("digits", "satisfaction"), [
    (["1"], "satisfied"), (["2"], "neutral"), (["3"], "dissatisfied"),
    (["7", "3"], "dissatisfied"), ([None, "1"], "satisfied"),
    (["7", "8"], None), ([None, None], None), (["0", None], None),
])
def test_survey(digits: list[str | None], satisfaction: str | None) -> None:
    context = {"order_id": "O1", "callback_id": "CB1", "attempt": 1, "purpose": "survey"}
    run = drive(digits, purpose="survey", context=context)
    answers = [e for e in run.effects if isinstance(e, SurveyAnswered)]
    assert answers == [SurveyAnswered(satisfaction, context)]  # type: ignore[arg-type]
    assert run.completed.outcome == "survey"
    assert run.effects[-1] == ReleaseCall("survey_completed")
    assert run.state.satisfaction == satisfaction


def test_stale_digits_for_an_earlier_prompt_are_ignored() -> None:
    interpreter = Interpreter(MENU)
    state, _ = interpreter.start(session_id="S", call_id="C", now=T0, customer=REGULAR)
    interpreter.digits(state, "5", T0)  # invalid: re-prompted as main:2
    step = interpreter.digits(state, "1", T0, prompt_id="main:1")
    assert step.ignored and not step.effects
    step = interpreter.digits(state, "9", T0, prompt_id="main:2")
    assert next(e for e in step.effects if isinstance(e, Completed)).route.queue == "complaint"  # type: ignore[union-attr]


def test_timeout_not_yet_due_changes_nothing() -> None:
    interpreter = Interpreter(MENU)
    state, _ = interpreter.start(session_id="S", call_id="C", now=T0)
    step = interpreter.timeout(state, T0 + timedelta(seconds=1))
    assert step.ignored and state.attempts == 0


def test_the_no_input_deadline_respects_the_edges_floor() -> None:
    # The menu's own timeout when it is the longer; the floor (a wall-time floor scaled to
    # suite seconds by the edge) when the menu's would pass before digits could come back.
    plain = Interpreter(MENU)
    state, _ = plain.start(session_id="S", call_id="C", now=T0)
    menu_timeout = (state.deadline - T0).total_seconds()  # type: ignore[operator]
    floored = Interpreter(MENU, min_timeout_seconds=menu_timeout + 24)
    state, _ = floored.start(session_id="S", call_id="C", now=T0)
    assert state.deadline == T0 + timedelta(seconds=menu_timeout + 24)
    assert floored.timeout(state, T0 + timedelta(seconds=menu_timeout)).ignored
    assert not floored.timeout(state, T0 + timedelta(seconds=menu_timeout + 24)).ignored


def test_hangup_ends_a_running_session_and_later_input_is_illegal() -> None:
    interpreter = Interpreter(MENU)
    state, _ = interpreter.start(session_id="S", call_id="C", now=T0)
    step = interpreter.hangup(state, T0)
    assert step.effects == [Completed("caller_hung_up", ["main"])]
    assert state.deadline is None
    with pytest.raises(IllegalTransition) as raised:
        interpreter.digits(state, "1", T0)
    assert raised.value.status == "completed" and raised.value.allowed == []
    with pytest.raises(IllegalTransition):
        interpreter.hangup(state, T0)


def test_waiting_for_outages_accepts_only_the_answer_or_a_hangup() -> None:
    interpreter = Interpreter(MENU)
    state, _ = interpreter.start(session_id="S", call_id="C", now=T0, customer=REGULAR)
    step = interpreter.digits(state, "1", T0)
    assert step.need is not None and step.need.area == "A-017"
    assert state.status == "waiting"
    with pytest.raises(IllegalTransition):
        interpreter.digits(state, "1", T0)
    with pytest.raises(IllegalTransition):
        interpreter.timeout(state, T0)


def test_recover_routes_to_the_fallback() -> None:
    interpreter = Interpreter(MENU)
    state, _ = interpreter.start(session_id="S", call_id="C", now=T0, customer=VIP)
    state.node = "gone"
    assert not interpreter.can_continue(state)
    step = interpreter.recover(state, T0)
    done = next(e for e in step.effects if isinstance(e, Completed))
    assert done.route is not None and (done.route.queue, done.route.priority) == ("billing", 10)


def test_state_round_trips_through_json() -> None:
    run = drive(["1"], customer=REGULAR, outages=[OUTAGE])
    again = SessionState.model_validate(run.state.model_dump(mode="json"))
    assert again == run.state
