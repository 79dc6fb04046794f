"""Request and response bodies of the REST API (strict in, explicit out)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.workorder.domain.callbacks import CallbackState
from services.workorder.domain.orders import OrderState, OrderType
from shared.limits import FIRST_YEAR, LAST_YEAR

BATCH_CUSTOMERS = 1_000
Tier = Literal["regular", "vip"]
Number = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
SatisfactionValue = Literal["satisfied", "neutral", "dissatisfied"]
Priority = Literal["normal", "urgent"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerIn(Strict):
    """A customer record. On update, fields left out keep their stored value; ``numbers`` (and
    ``ani``, the trace's single calling number) replace the stored numbers when given."""

    # Lets a trace's ``customer`` line be posted as it is.
    kind: Literal["customer"] | None = None
    account: Key | None = None
    name: str | None = Field(default=None, max_length=200)
    numbers: Annotated[list[Number], Field(max_length=20)] | None = None
    ani: Number | None = None
    area: Key | None = None
    tier: Tier = "regular"
    flags: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=64)]],
                     Field(max_length=32)] = []
    balance: Decimal = Field(default=Decimal(0), max_digits=14, decimal_places=2)


class BatchCustomer(CustomerIn):
    account: Key


class CustomerBatch(Strict):
    # One transaction per batch: a larger directory comes in several.
    customers: list[BatchCustomer] = Field(max_length=BATCH_CUSTOMERS)


class CustomerOut(BaseModel):
    account: str
    name: str | None
    numbers: list[str]
    area: str | None
    tier: str
    flags: list[str]
    # Money travels as a decimal string so no client rounds it through a float.
    balance: Decimal
    created_at: datetime
    updated_at: datetime


class CustomerAccessOut(BaseModel):
    """One time a customer's personal data was shown, and to whom."""

    id: int
    account: str
    action: Literal["record", "lookup", "order"]
    subject: str
    scopes: str
    at: datetime
    # The order read (action ``order``: its contact number and address are the customer's).
    order_id: str | None = None


class BatchResult(BaseModel):
    upserted: int
    accounts: list[str]


class OutageIn(Strict):
    area: Key
    type: Literal["planned", "fault"]
    start: AwareDatetime | None = None
    # Unknown at first for many faults; without it the notice stays active.
    restore_eta: AwareDatetime | None = None


class OutageOut(BaseModel):
    outage_id: str
    area: str
    type: str
    start: datetime
    restore_eta: datetime | None
    created_at: datetime
    active: bool
    order_id: str | None = Field(description="the repair order every report of this outage "
                                             "joins (set by the first report)")
    restored_at: datetime | None
    restored_by: str | None


class CustomerLookup(CustomerOut):
    active_outages: list[OutageOut] = Field(description="outages now active in the "
                                                        "customer's area")


class RestoreIn(Strict):
    """The outage is over: its repair order is resolved with this reply, which every reporter
    hears on their callback."""

    reply: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                            max_length=10_000)] | None = None


class OrderIn(Strict):
    type: OrderType
    call_id: Key | None = Field(default=None, max_length=128)
    customer_account: Key | None = None
    contact_number: Number | None = None
    area: Key | None = None
    description: str | None = Field(default=None, max_length=10_000)
    category: Key | None = None
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    priority: Priority = "normal"
    address: str | None = Field(default=None, max_length=1000)
    # Normally learnt from the IVR's session for ``call_id``.
    ivr_path: Annotated[list[Annotated[str, StringConstraints(max_length=64)]],
                        Field(max_length=64)] | None = None
    # A repair from an area with an active outage or an open repair order joins that order
    # (the caller goes on its callback list); true opens a new order regardless, for an agent
    # who knows this is a different fault.
    standalone: bool = False


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class DispatchIn(Strict):
    """Dispatch (or dispatch again, 二次派单) to a department or crew; may complete the
    details the department needs."""

    department: Key
    reason: Text | None = None
    area: Key | None = None
    description: str | None = Field(default=None, max_length=10_000)
    category: Key | None = None


class AcceptIn(Strict):
    # Defaults to the caller of the request.
    owner: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class TransferIn(Strict):
    department: Key
    reason: Text


class ReasonIn(Strict):
    reason: Text


class OptionalReasonIn(Strict):
    reason: Text | None = None


class PriorityIn(Strict):
    priority: Priority
    reason: Text | None = None


class CalendarIn(Strict):
    year: int | None = Field(default=None, ge=FIRST_YEAR, le=LAST_YEAR)
    # A year has 366 days at most.
    holidays: Annotated[list[date], Field(max_length=366)] = []
    workdays: Annotated[list[date], Field(max_length=366)] = []
    source: str = Field(default="", max_length=2000)
    provisional: bool = False


class ClockOut(BaseModel):
    clock_id: int
    name: str
    round: int
    state: str
    basis: str
    budget_seconds: float
    elapsed_seconds: float
    remaining_seconds: float
    due_at: datetime | None
    urged: bool
    level: int
    overdue: bool
    priority: str
    policy_version: int
    started_at: datetime
    stopped_at: datetime | None
    callback_id: str | None


class ClockHistoryOut(BaseModel):
    name: str
    event: str
    actor: str
    reason: str | None
    budget_seconds: float
    elapsed_seconds: float
    priority: str
    policy_version: int
    level: int
    due_at: datetime | None
    at: datetime


class ResolveIn(Strict):
    reply: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]


class HistoryOut(BaseModel):
    action: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str | None
    at: datetime


class AttemptOut(BaseModel):
    attempt: int
    request_id: str
    to_number: str | None
    call_id: str | None
    requested_at: datetime
    ended_at: datetime | None
    result: str | None


class CallbackOut(BaseModel):
    callback_id: str
    order_id: str
    resolution: int
    state: CallbackState
    attempts: int
    max_attempts: int
    due_at: datetime | None
    satisfaction: SatisfactionValue | None
    outcome: str | None
    last_failure: str | None
    created_at: datetime
    completed_at: datetime | None
    reporter_id: str | None = Field(default=None, description="the linked reporter called "
                                    "back; null for the order's own caller")
    attempt_log: list[AttemptOut] = []


class ReporterOut(BaseModel):
    reporter_id: str
    order_id: str
    type: OrderType
    call_id: str | None
    customer_account: str | None
    contact_number: str | None
    description: str | None
    reason: str = Field(description="why the report joined the order: outage or open_order")
    linked_by: str
    linked_at: datetime


class OrderOut(BaseModel):
    order_id: str
    type: OrderType
    state: OrderState
    allowed_actions: list[str]
    call_id: str | None
    customer_account: str | None
    contact_number: str | None
    area: str | None
    description: str | None
    category: str | None
    idempotency_key: str | None
    resolution: int
    reply: str | None
    satisfaction: SatisfactionValue | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    priority: str
    department: str | None
    owner: str | None
    # The team and department of the agent who took the order (their supervisors read it).
    team: str | None = None
    agent_department: str | None = None
    dispatches: int
    address: str | None
    ivr_path: list[str] | None
    flags: list[str]
    abandoned_call_id: str | None
    first_resolved_at: datetime | None
    outage_id: str | None = None
    linked: ReporterOut | None = Field(default=None, description="on a create that joined "
                                       "an existing order: this caller's place on its "
                                       "callback list")


class OrderDetail(OrderOut):
    history: list[HistoryOut]
    reporters: list[ReporterOut] = []
    callbacks: list[CallbackOut]
    recording_ids: list[str]
    clocks: list[ClockOut] = []
    clock_history: list[ClockHistoryOut] = []


class OpenCaseOut(OrderOut):
    clocks: list[ClockOut]


class PolicyOut(BaseModel):
    version: int
    created_by: str
    created_at: datetime
    document: dict[str, Any]


class CallbackCounts(BaseModel):
    total: int
    completed: int
    unreachable: int
    pending: int


class OrderCounts(BaseModel):
    total: int
    by_type: dict[str, dict[str, int]]
    by_state: dict[str, int]


class Summary(BaseModel):
    orders: OrderCounts
    resolved: int = Field(description="orders resolved at least once")
    closed: int = Field(description="orders closed")
    reopened: int = Field(description="orders reopened at least once")
    callbacks: CallbackCounts
    callback_completion_rate: float | None = Field(
        description="resolutions whose callback completed or was escalated (unreachable → "
                    "reopened) over all resolutions; null before the first resolution")
    satisfaction: dict[str, int]


class DepartmentRowOut(BaseModel):
    department: str | None = Field(description="null: never dispatched (the front line)")
    created: int
    resolved: int
    closed: int
    reopened: int
    overdue: int = Field(description="cases with a clock whose deadline passed in the period")
    callbacks_owed: int = Field(description="callbacks owed for resolutions in the period")
    callbacks_completed: int
    callbacks_escalated: int = Field(description="unreachable: the case was reopened")
    callbacks_pending: int
    callback_completion_rate: float | None
    satisfaction: dict[str, int] = Field(description="survey answers given in the period")
    first_contact_candidates: int
    first_contact_resolved: int
    first_contact_resolution_rate: float | None


class ReportHeader(BaseModel):
    period: Literal["day", "week", "month"]
    date: date
    label: str
    start: datetime
    end: datetime
    generated_at: datetime


class DepartmentReportOut(ReportHeader):
    departments: list[DepartmentRowOut]
    total: DepartmentRowOut


class OverdueItemOut(BaseModel):
    department: str | None
    order_id: str
    type: str
    case_state: str
    owner: str | None
    clock: str
    round: int
    clock_state: str
    basis: str
    budget_seconds: float
    due_at: datetime | None
    overdue_seconds: float = Field(description="past the budget at as_of (seconds of the "
                                               "clock's basis)")
    level: int
    level_name: str | None
    still_running: bool


class OverdueDepartmentOut(BaseModel):
    department: str | None
    cases: int
    clocks: int
    by_level: dict[str, int]
    items: list[OverdueItemOut]


class OverdueTotal(BaseModel):
    cases: int
    clocks: int


class OverdueBulletinOut(ReportHeader):
    as_of: datetime
    departments: list[OverdueDepartmentOut]
    total: OverdueTotal
