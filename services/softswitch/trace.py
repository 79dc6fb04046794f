"""Parser for call traces in the ``hotline-trace/1`` format (JSON Lines, DESIGN §7).

Pure: text in, a :class:`Trace` and a list of line errors out. Unknown kinds and unknown
fields are ignored; a malformed line is reported with its (1-based) line number and skipped,
so one bad line never stops a replay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.input_guard import parse_json, value_problem
from shared.limits import MAX_DEPTH, MAX_TEAM

FORMAT = "hotline-trace/1"
WORKORDER_TYPES = ("repair", "complaint", "report", "opinion", "suggestion", "consultation",
                   "praise")
WorkorderType = Literal["repair", "complaint", "report", "opinion", "suggestion",
                        "consultation", "praise"]
Satisfaction = Literal["satisfied", "neutral", "dissatisfied"]
# What a surveyed customer presses for each answer (the IVR's survey menu).
SATISFACTION_DIGITS: dict[str, str] = {"satisfied": "1", "neutral": "2", "dissatisfied": "3"}

Seconds = float


class _Line(BaseModel):
    # Strict so "12" is not silently read as 12 seconds; extra fields are a forward-compatible
    # extension point of the format, hence ignored.
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True, frozen=True)


class Header(_Line):
    kind: Literal["header"]
    format: str
    name: str | None = None
    start: datetime | None = None


class Customer(_Line):
    kind: Literal["customer"]
    ani: str = Field(min_length=1)
    account: str = Field(min_length=1)
    name: str | None = None
    tier: str = "regular"
    area: str | None = None
    flags: list[str] = []


class Agent(_Line):
    kind: Literal["agent"]
    id: str = Field(min_length=1)
    team: str | None = Field(default=None, min_length=1, max_length=MAX_TEAM)
    skills: dict[str, int] = Field(min_length=1)
    login: Seconds = Field(default=0.0, ge=0)
    logout: Seconds | None = Field(default=None, ge=0)
    answer_after: Seconds = Field(default=2.0, ge=0)
    wrapup: Seconds = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _logout_after_login(self) -> Agent:
        if self.logout is not None and self.logout < self.login:
            raise ValueError("logout is before login")
        return self


class Outage(_Line):
    kind: Literal["outage"]
    at: Seconds = Field(ge=0)
    area: str = Field(min_length=1)
    type: str = "fault"
    restore_eta: Seconds | None = Field(default=None, ge=0)
    description: str | None = None


class WorkorderDisposition(_Line):
    type: WorkorderType
    area: str | None = None
    reply: str | None = None


class CallbackDisposition(_Line):
    # null: the customer never answers the callback.
    answer_on_attempt: int | None = Field(default=1, ge=1)
    satisfaction: Satisfaction = "satisfied"


class Disposition(_Line):
    workorder: WorkorderDisposition | None = None
    callback: CallbackDisposition | None = None


class Call(_Line):
    kind: Literal["call"]
    id: str = Field(min_length=1)
    at: Seconds = Field(ge=0)
    from_: str = Field(alias="from", min_length=1)
    to: str = "95598"
    # One entry per prompt with collect; null or "" means the caller presses nothing.
    dtmf: list[str | None] = []
    think: Seconds = Field(default=1.0, ge=0)
    # Seconds in queue before the caller hangs up; null: waits forever.
    patience: Seconds | None = Field(default=None, ge=0)
    talk: Seconds = Field(default=60.0, ge=0)
    # Takes a virtual-hold offer if the queue makes one: presses its digit (after ``think``),
    # hangs up, and answers the agent-first callback after ``think`` seconds of ringing.
    virtual_hold: bool = False
    disposition: Disposition | None = None


_MODELS: dict[str, type[_Line]] = {"header": Header, "customer": Customer, "agent": Agent,
                                   "outage": Outage, "call": Call}


@dataclass(frozen=True)
class LineError:
    line: int
    error: str
    kind: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "kind": self.kind, "error": self.error}


@dataclass
class Trace:
    header: Header | None = None
    customers: list[Customer] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    ignored: int = 0

    @property
    def records(self) -> int:
        return len(self.customers) + len(self.agents) + len(self.outages) + len(self.calls)

    def customers_by_number(self) -> dict[str, Customer]:
        return {customer.ani: customer for customer in self.customers}


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "line"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_trace(text: str) -> tuple[Trace, list[LineError]]:
    trace = Trace()
    errors: list[LineError] = []
    seen: dict[str, set[str]] = {"agent": set(), "call": set(), "customer": set()}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            obj = parse_json(line)
        except json.JSONDecodeError as error:
            errors.append(LineError(number, f"bad JSON: {error.msg} at column {error.colno}"))
            continue
        except RecursionError:
            # Security review H3: one such line used to fail the whole upload with a 500.
            errors.append(LineError(number, "bad JSON: nested too deeply"))
            continue
        if not isinstance(obj, dict):
            errors.append(LineError(number, "not a JSON object"))
            continue
        # What the suite could not store (a NUL in a name, a NaN time): this line only.
        problem = value_problem(obj, MAX_DEPTH, root="line")
        if problem is not None:
            where = ".".join(str(part) for part in problem.loc[1:]) or "line"
            errors.append(LineError(number, f"{where}: {problem.msg}"))
            continue
        kind = obj.get("kind")
        if not isinstance(kind, str):
            errors.append(LineError(number, "kind: missing or not a string"))
            continue
        model = _MODELS.get(kind)
        if model is None:
            trace.ignored += 1
            continue
        try:
            # From the JSON text, so strict mode still reads ISO timestamps as datetimes.
            record = model.model_validate_json(line)
        except ValidationError as error:
            errors.append(LineError(number, _describe(error), kind))
            continue
        if isinstance(record, Header):
            if trace.header is not None:
                errors.append(LineError(number, "duplicate header", kind))
            elif record.format != FORMAT:
                errors.append(LineError(number, f"unsupported format {record.format!r} "
                                                f"(expected {FORMAT!r})", kind))
            else:
                trace.header = record
            continue
        key = {"agent": "id", "call": "id", "customer": "ani"}.get(kind)
        if key is not None:
            identity = str(getattr(record, key))
            if identity in seen[kind]:
                errors.append(LineError(number, f"duplicate {kind} {key} {identity!r}", kind))
                continue
            seen[kind].add(identity)
        if isinstance(record, Customer):
            trace.customers.append(record)
        elif isinstance(record, Agent):
            trace.agents.append(record)
        elif isinstance(record, Outage):
            trace.outages.append(record)
        elif isinstance(record, Call):
            trace.calls.append(record)
    # Stable sort: calls at the same instant keep their file order.
    trace.calls.sort(key=lambda call: call.at)
    trace.outages.sort(key=lambda outage: outage.at)
    return trace, errors
