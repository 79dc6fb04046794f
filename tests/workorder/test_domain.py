"""Table-driven tests of the order and callback state machines (pure, no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.workorder.domain import callbacks as cbd
from services.workorder.domain import orders as od
from services.workorder.domain.callbacks import (
    Callback,
    CallbackAction,
    CallbackPolicy,
    CallbackState,
    StaleAttempt,
)
from services.workorder.domain.orders import Order, OrderAction, OrderState, OrderType
from shared.errors import IllegalTransition, Invalid

NOW = datetime(2026, 7, 15, 8, 0, tzinfo=UTC)
POLICY = CallbackPolicy.from_seconds(delay=30, retry=120, max_attempts=3, attempt_timeout=600)

# -- orders ---------------------------------------------------------------------------------

S, A = OrderState, OrderAction
ORDER_LEGAL = [
    (S.CREATED, A.DISPATCH, S.DISPATCHED),
    (S.CREATED, A.RESOLVE, S.RESOLVED),          # first-contact resolution
    (S.DISPATCHED, A.ACCEPT, S.ACCEPTED),
    (S.DISPATCHED, A.TRANSFER, S.DISPATCHED),
    (S.DISPATCHED, A.RESOLVE, S.RESOLVED),
    (S.ACCEPTED, A.ARRIVE, S.ON_SITE),
    (S.ACCEPTED, A.TRANSFER, S.DISPATCHED),
    (S.ACCEPTED, A.RESOLVE, S.RESOLVED),
    (S.ON_SITE, A.RESOLVE, S.RESOLVED),
    (S.RESOLVED, A.START_CALLBACK, S.CALLBACK_PENDING),
    (S.RESOLVED, A.CLOSE, S.CLOSED),             # callback_request only
    (S.CALLBACK_PENDING, A.CLOSE, S.CLOSED),
    (S.CALLBACK_PENDING, A.REOPEN, S.REOPENED),
    (S.REOPENED, A.DISPATCH, S.DISPATCHED),      # 二次派单
    (S.REOPENED, A.RESOLVE, S.RESOLVED),
    (S.CLOSED, A.REOPEN, S.REOPENED),            # a supervisor reopens
]
# Legal in the table but guarded by type.
TYPE_GUARDED = {(S.RESOLVED, A.CLOSE): OrderType.CALLBACK_REQUEST}
ORDER_ACTIONS = [a for a in OrderAction if a is not OrderAction.CREATE]
ORDER_ILLEGAL = [(state, action) for state in OrderState for action in ORDER_ACTIONS
                 if (state, action) not in {(s, a) for s, a, _ in ORDER_LEGAL}]


@pytest.mark.parametrize(("state", "action", "order_type"), [
    (S.RESOLVED, A.CLOSE, OrderType.REPAIR),                       # a survey is owed
    (S.RESOLVED, A.START_CALLBACK, OrderType.CALLBACK_REQUEST),    # the case is the call back
    (S.ACCEPTED, A.ARRIVE, OrderType.COMPLAINT),                   # only crews go on site
])
def test_type_guards(state: OrderState, action: OrderAction, order_type: OrderType) -> None:
    with pytest.raises(IllegalTransition) as raised:
        od.apply(order(state, order_type=order_type), action, now=NOW, actor="A001")
    assert action.value not in raised.value.allowed


def order(state: OrderState = OrderState.CREATED, resolution: int = 0,
          order_type: OrderType = OrderType.REPAIR) -> Order:
    return Order(order_id="WO1", type=order_type, state=state, resolution=resolution)


def test_the_table_is_exactly_the_legal_list() -> None:
    table = {(s, a, t) for (s, a), t in od.TRANSITIONS.items()}
    assert table == set(ORDER_LEGAL)
    assert od.TERMINAL_STATES == {OrderState.CLOSED}


@pytest.mark.parametrize(("state", "action", "target"), ORDER_LEGAL)
def test_order_legal_transitions(state: OrderState, action: OrderAction,
                                 target: OrderState) -> None:
    order_type = TYPE_GUARDED.get((state, action), OrderType.REPAIR)
    after, step = od.apply(order(state, order_type=order_type), action, now=NOW, actor="A001",
                           reason="why")
    assert after.state is target
    assert (step.from_state, step.to_state, step.action) == (state, target, action)
    assert (step.actor, step.at, step.reason, step.order_id) == ("A001", NOW, "why", "WO1")


@pytest.mark.parametrize(("state", "action"), ORDER_ILLEGAL)
def test_order_illegal_transitions_name_state_and_allowed(state: OrderState,
                                                          action: OrderAction) -> None:
    with pytest.raises(IllegalTransition) as raised:
        od.apply(order(state), action, now=NOW, actor="A001")
    error = raised.value
    assert (error.entity, error.state, error.action) == ("order", state.value, action.value)
    assert error.allowed == od.allowed_actions(state, OrderType.REPAIR)
    assert error.detail()["allowed"] == error.allowed


def test_create_audits_from_nothing() -> None:
    created, step = od.create("WO1", OrderType.COMPLAINT, now=NOW, actor="A001")
    assert created.state is OrderState.CREATED and created.resolution == 0
    assert step.from_state is None and step.to_state is OrderState.CREATED
    assert step.action is OrderAction.CREATE


def test_each_resolution_is_counted_and_clears_the_last_satisfaction() -> None:
    first, _ = od.resolve(order(), "fixed", now=NOW, actor="A001")
    assert (first.resolution, first.reply) == (1, "fixed")
    reopened = replace(first, state=OrderState.REOPENED, satisfaction="dissatisfied")
    second, step = od.resolve(reopened, "fixed again", now=NOW, actor="A002")
    assert (second.state, second.resolution, second.satisfaction) == (OrderState.RESOLVED, 2, None)
    assert step.reason == "fixed again"


@pytest.mark.parametrize(("outcome", "state", "reason", "satisfaction"), [
    ("satisfied", OrderState.CLOSED, "satisfied", "satisfied"),
    ("neutral", OrderState.CLOSED, "neutral", "neutral"),
    ("dissatisfied", OrderState.REOPENED, od.REOPEN_DISSATISFIED, "dissatisfied"),
    ("unreachable", OrderState.REOPENED, od.REOPEN_UNREACHABLE, None),
])
def test_callback_outcome_closes_or_reopens(outcome: od.Satisfaction, state: OrderState,
                                            reason: str, satisfaction: str | None) -> None:
    pending = order(OrderState.CALLBACK_PENDING, resolution=1)
    after, step = od.apply_callback_outcome(pending, outcome, now=NOW, actor="workorder")
    assert (after.state, step.reason, after.satisfaction) == (state, reason, satisfaction)


def test_callback_outcome_on_a_resolved_order_is_illegal() -> None:
    with pytest.raises(IllegalTransition):
        od.apply_callback_outcome(order(OrderState.RESOLVED, 1), "satisfied", now=NOW,
                                  actor="workorder")


@pytest.mark.parametrize(("account", "number", "ok"), [
    ("3100012345", None, True), (None, "+8613800000001", True), ("3100012345", "+86", True),
    (None, None, False), ("", "", False),
])
def test_an_order_needs_someone_to_call_back(account: str | None, number: str | None,
                                             ok: bool) -> None:
    if ok:
        od.require_contact(account, number)
    else:
        with pytest.raises(Invalid) as raised:
            od.require_contact(account, number)
        assert raised.value.field == "contact_number"


# -- callbacks ------------------------------------------------------------------------------

CALLBACK_LEGAL = [
    (CallbackState.PENDING, CallbackAction.DIAL, CallbackState.DIALING),
    (CallbackState.PENDING, CallbackAction.ANSWER, CallbackState.COMPLETED),
    (CallbackState.PENDING, CallbackAction.GIVE_UP, CallbackState.UNREACHABLE),  # denied number
    (CallbackState.DIALING, CallbackAction.ANSWER, CallbackState.COMPLETED),
    (CallbackState.DIALING, CallbackAction.RETRY, CallbackState.PENDING),
    (CallbackState.DIALING, CallbackAction.GIVE_UP, CallbackState.UNREACHABLE),
]


def callback(state: CallbackState = CallbackState.PENDING, attempts: int = 0,
             max_attempts: int = 3, due_at: datetime | None = NOW) -> Callback:
    return Callback(callback_id="CB1", order_id="WO1", resolution=1, max_attempts=max_attempts,
                    state=state, attempts=attempts, due_at=due_at)


def test_callback_table_is_exactly_the_legal_list() -> None:
    table = {(s, a, t) for (s, a), t in cbd.TRANSITIONS.items()}
    assert table == set(CALLBACK_LEGAL)


def test_schedule_sets_the_first_deadline() -> None:
    task = cbd.schedule("CB1", "WO1", 2, now=NOW, policy=POLICY)
    assert (task.state, task.attempts, task.resolution) == (CallbackState.PENDING, 0, 2)
    assert task.due_at == NOW + timedelta(seconds=30)
    assert task.max_attempts == 3


def test_dial_counts_the_attempt_and_arms_its_timeout() -> None:
    dialed = cbd.dial(callback(), now=NOW, policy=POLICY)
    assert (dialed.state, dialed.attempts) == (CallbackState.DIALING, 1)
    assert dialed.due_at == NOW + timedelta(seconds=600)


@pytest.mark.parametrize("state", [CallbackState.DIALING, CallbackState.COMPLETED,
                                   CallbackState.UNREACHABLE])
def test_dial_is_illegal_unless_pending(state: CallbackState) -> None:
    with pytest.raises(IllegalTransition) as raised:
        cbd.dial(callback(state, attempts=1), now=NOW, policy=POLICY)
    assert raised.value.allowed == cbd.allowed_actions(state)


@pytest.mark.parametrize(("attempts", "state", "action", "due"), [
    (1, CallbackState.PENDING, CallbackAction.RETRY, NOW + timedelta(seconds=120)),
    (2, CallbackState.PENDING, CallbackAction.RETRY, NOW + timedelta(seconds=120)),
    (3, CallbackState.UNREACHABLE, CallbackAction.GIVE_UP, None),
])
def test_failed_attempt_retries_until_the_limit(attempts: int, state: CallbackState,
                                                action: CallbackAction,
                                                due: datetime | None) -> None:
    after, taken = cbd.fail_attempt(callback(CallbackState.DIALING, attempts), attempts,
                                    "no_answer", now=NOW, policy=POLICY)
    assert (after.state, taken, after.due_at, after.last_failure) == (state, action, due,
                                                                      "no_answer")
    assert after.outcome == ("unreachable" if state is CallbackState.UNREACHABLE else None)


@pytest.mark.parametrize("state", [CallbackState.PENDING, CallbackState.COMPLETED,
                                   CallbackState.UNREACHABLE])
def test_fail_is_illegal_unless_dialing(state: CallbackState) -> None:
    with pytest.raises(IllegalTransition):
        cbd.fail_attempt(callback(state, attempts=1), 1, "no_answer", now=NOW, policy=POLICY)


@pytest.mark.parametrize(("state", "attempts", "attempt"), [
    (CallbackState.DIALING, 2, 1),   # the release of a superseded attempt
    (CallbackState.DIALING, 1, 2),   # an attempt that was never dialled
    (CallbackState.PENDING, 0, 0),   # nothing dialled yet
])
def test_outcomes_of_other_attempts_are_stale(state: CallbackState, attempts: int,
                                              attempt: int) -> None:
    task = callback(state, attempts)
    with pytest.raises(StaleAttempt):
        cbd.fail_attempt(task, attempt, "no_answer", now=NOW, policy=POLICY)
    with pytest.raises(StaleAttempt):
        cbd.answer(task, attempt, "satisfied", now=NOW)


@pytest.mark.parametrize("state", [CallbackState.DIALING, CallbackState.PENDING])
@pytest.mark.parametrize("satisfaction", ["satisfied", "neutral", "dissatisfied"])
def test_answer_completes_the_task(state: CallbackState, satisfaction: od.Satisfaction) -> None:
    done = cbd.answer(callback(state, attempts=2), 2, satisfaction, now=NOW)
    assert (done.state, done.satisfaction, done.outcome) == (CallbackState.COMPLETED,
                                                             satisfaction, satisfaction)
    assert (done.due_at, done.completed_at) == (None, NOW)


@pytest.mark.parametrize("state", [CallbackState.COMPLETED, CallbackState.UNREACHABLE])
def test_answer_after_the_end_is_illegal(state: CallbackState) -> None:
    with pytest.raises(IllegalTransition):
        cbd.answer(callback(state, attempts=1), 1, "satisfied", now=NOW)


def test_survey_without_an_answer_is_a_failed_attempt() -> None:
    after, action = cbd.survey_result(callback(CallbackState.DIALING, 1), 1, None, now=NOW,
                                      policy=POLICY)
    assert (after.state, action, after.last_failure) == (CallbackState.PENDING,
                                                         CallbackAction.RETRY, "no_answer_given")
    after, action = cbd.survey_result(callback(CallbackState.DIALING, 1), 1, "neutral",
                                      now=NOW, policy=POLICY)
    assert (after.state, action) == (CallbackState.COMPLETED, CallbackAction.ANSWER)


@pytest.mark.parametrize(("state", "attempts", "after_state", "action"), [
    (CallbackState.PENDING, 0, CallbackState.DIALING, CallbackAction.DIAL),
    (CallbackState.PENDING, 1, CallbackState.DIALING, CallbackAction.DIAL),
    (CallbackState.DIALING, 1, CallbackState.PENDING, CallbackAction.RETRY),
    (CallbackState.DIALING, 3, CallbackState.UNREACHABLE, CallbackAction.GIVE_UP),
])
def test_timer_dials_or_times_the_attempt_out(state: CallbackState, attempts: int,
                                              after_state: CallbackState,
                                              action: CallbackAction) -> None:
    after, taken = cbd.on_timer(callback(state, attempts), now=NOW, policy=POLICY)
    assert (after.state, taken) == (after_state, action)
    if action is CallbackAction.RETRY:
        assert after.last_failure == "timeout"


@pytest.mark.parametrize("task", [
    callback(due_at=NOW + timedelta(seconds=1)),
    callback(CallbackState.COMPLETED, 1, due_at=None),
    callback(CallbackState.UNREACHABLE, 3, due_at=NOW),
])
def test_timer_before_the_deadline_or_after_the_end_is_illegal(task: Callback) -> None:
    assert not cbd.is_due(task, NOW)
    with pytest.raises(IllegalTransition):
        cbd.on_timer(task, now=NOW, policy=POLICY)


def test_policy_needs_an_attempt() -> None:
    with pytest.raises(ValueError):
        CallbackPolicy.from_seconds(delay=0, retry=0, max_attempts=0, attempt_timeout=1)


def test_domain_imports_no_io() -> None:
    import ast
    from pathlib import Path

    import services.workorder.domain as domain

    forbidden = {"asyncio", "sqlalchemy", "fastapi", "aio_pika", "httpx", "asyncpg"}
    for path in Path(domain.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in forbidden, (path.name, name)


# -- linked reports --------------------------------------------------------------------------

def _candidate(order_id: str, state: OrderState, outage_id: str | None = None
               ) -> od.LinkCandidate:
    return od.LinkCandidate(order_id, state, outage_id)


@pytest.mark.parametrize(("order_type", "candidates", "outages", "expected"), [
    (OrderType.REPAIR, [], set(), None),
    # The outage's order wins over an older open order in the same area.
    (OrderType.REPAIR, [_candidate("WO1", OrderState.DISPATCHED),
                        _candidate("WO2", OrderState.CREATED, "OUT1")], {"OUT1"},
     ("WO2", "outage")),
    # An outage that is over no longer draws reports; the oldest open order does.
    (OrderType.REPAIR, [_candidate("WO1", OrderState.ACCEPTED),
                        _candidate("WO2", OrderState.CREATED, "OUT1")], set(),
     ("WO1", "open_order")),
    (OrderType.REPAIR, [_candidate("WO1", OrderState.RESOLVED),
                        _candidate("WO2", OrderState.REOPENED)], set(), ("WO2", "open_order")),
    (OrderType.REPAIR, [_candidate("WO1", OrderState.CALLBACK_PENDING, "OUT1")], {"OUT1"},
     None),
    (OrderType.COMPLAINT, [_candidate("WO1", OrderState.CREATED)], set(), None),
])
def test_link_target(order_type: OrderType, candidates: list[od.LinkCandidate],
                     outages: set[str], expected: tuple[str, str] | None) -> None:
    target = od.link_target(order_type, candidates, outages)
    assert (None if target is None else (target[0].order_id, target[1])) == expected


@pytest.mark.parametrize("state", list(OrderState))
def test_a_report_joins_only_while_work_is_to_come(state: OrderState) -> None:
    if state in od.LINKABLE_STATES:
        step = od.link(order(state), "outage", now=NOW, actor="A001")
        assert (step.action, step.from_state, step.to_state) == (OrderAction.LINK, state, state)
    else:
        with pytest.raises(IllegalTransition):
            od.link(order(state), "outage", now=NOW, actor="A001")


@pytest.mark.parametrize(("outcomes", "expected"), [
    (["satisfied"], "satisfied"),
    (["satisfied", "neutral"], "neutral"),
    (["neutral", "unreachable", "satisfied"], "unreachable"),
    (["unreachable", "dissatisfied"], "dissatisfied"),
])
def test_the_worst_callback_decides_a_shared_order(outcomes: list[str], expected: str) -> None:
    assert od.combined_outcome(outcomes) == expected


@pytest.mark.parametrize(("parties", "last_outcome", "owed"), [
    # The first resolution: everyone on the order.
    ([None, "R1", "R2"], {}, [None, "R1", "R2"]),
    # A re-resolution: the unhappy, the unreachable, the unsettled and the newly joined.
    ([None, "R1", "R2", "R3"],
     {None: "satisfied", "R1": "dissatisfied", "R2": "neutral"}, ["R1", "R3"]),
    ([None, "R1", "R2"], {None: "unreachable", "R1": None, "R2": "satisfied"}, [None, "R1"]),
    # Everyone was content (a supervisor reopened a closed order): everyone hears again.
    ([None, "R1"], {None: "satisfied", "R1": "neutral"}, [None, "R1"]),
])
def test_a_re_resolution_calls_back_only_those_not_yet_content(
        parties: list[str | None], last_outcome: dict[str | None, str | None],
        owed: list[str | None]) -> None:
    assert od.owed_callbacks(parties, last_outcome) == owed
