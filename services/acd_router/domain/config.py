"""Routing configuration: queues, skills, widening steps, strategies, limits and hours.

Validated with pydantic (strict, no extra fields) so a malformed file or request body is
refused with field locations; *satisfiability* (does anybody hold a step's skills?) is a
separate check, :func:`config_warnings`, because a config that nobody can serve yet is still
legal (agents log in later). Sans-IO: YAML parsing and persistence live at the edge.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from shared.limits import MAX_DURATION_SECONDS

from .queue import NAME_PATTERN

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Level = Annotated[int, Field(ge=1, le=10)]
# Every duration is at most a year: beyond that none means anything on a floor, and a
# value near float's limit would overflow the datetime arithmetic it goes into.
Seconds = Annotated[float, Field(ge=0, le=MAX_DURATION_SECONDS)]
PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_DURATION_SECONDS)]


class _Model(BaseModel):
    # No NaN or infinity: a deadline or a weight computed from one breaks routing.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Strategy(StrEnum):
    LONGEST_IDLE = "longest_idle"
    FEWEST_CALLS = "fewest_calls"
    LEAST_TALK = "least_talk"
    BEST_SKILL = "best_skill"
    ROUND_ROBIN = "round_robin"


class Credits(_Model):
    """Seconds of queue credit added to a call's score (score = credit + weight * waited).

    A credit of C lets a call jump ahead of every call that arrived less than C seconds
    before it; a very large credit (the default for VIP) is strict priority."""

    vip: Seconds = 1_000_000.0
    green_channel: Seconds = 1_000_000.0
    near_breach: Seconds = 300.0
    # Per unit of the IVR's integer ``priority``: the walking skeleton ordered by it first.
    per_priority: Seconds = 1_000_000.0


class PreferredAgent(_Model):
    """Offer the call to the agent who last served this caller (within ``within_days``) or
    to the owner of the caller's open work order first, for at most ``timeout_seconds``."""

    enabled: bool = False
    timeout_seconds: Seconds = 20.0
    within_days: Annotated[float, Field(gt=0, le=366)] = 7.0


class VirtualHold(_Model):
    """Offer callers a callback that keeps their place once the estimated wait reaches
    ``min_estimated_wait_seconds``: the caller presses ``digit`` (or an integrator calls
    ``POST /calls/{id}/virtual-hold``), hears ``announcement`` and hangs up; when the call
    reaches an agent, the agent is rung first and then the customer is dialled."""

    enabled: bool = False
    min_estimated_wait_seconds: Seconds = 120.0
    digit: Annotated[str, StringConstraints(pattern=r"^[0-9*#]$")] = "1"
    announcement: str | None = ("You keep your place in the queue; we will call you back "
                                "when an agent is free.")


class Step(_Model):
    """One widening step, reached once the call has waited ``after_seconds``. Steps are
    cumulative: each applies on top of the previous ones."""

    after_seconds: PositiveSeconds
    # Lowered (or raised) minimum levels of the queue's skills.
    min_levels: dict[Name, Level] = {}
    # Agents qualified for these queues' own base requirements may also take the call.
    add_queues: list[Name] = []
    drop_optional: bool = False
    name: str | None = None


class LimitAction(_Model):
    action: Literal["overflow", "callback", "release"]
    # overflow: the queue the call moves to (it keeps its arrival time, so its place).
    queue: Name | None = None
    # release (and callback): what the caller is told before CTI acts.
    announcement: str | None = None

    @model_validator(mode="after")
    def _queue_for_overflow(self) -> LimitAction:
        if self.action == "overflow" and not self.queue:
            raise ValueError("overflow needs a target queue")
        return self


class Limits(_Model):
    max_length: Annotated[int, Field(ge=1)] | None = None
    max_wait_seconds: PositiveSeconds | None = None
    on_max_length: LimitAction | None = None
    on_max_wait: LimitAction | None = None
    on_no_agents: LimitAction | None = None
    on_closed: LimitAction | None = None


_SPAN = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Hours(_Model):
    """Business hours: weekly spans ``"HH:MM-HH:MM"``, holidays (closed) and make-up working
    days (open with ``workday`` hours although they fall on a weekend)."""

    timezone: str = "Asia/Shanghai"
    weekly: dict[Day, list[str]] = {}
    holidays: list[date] = []
    make_up_days: list[date] = []
    workday: list[str] = []

    @field_validator("weekly")
    @classmethod
    def _weekly_spans(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for spans in value.values():
            for span in spans:
                _parse_span(span)
        return value

    @field_validator("workday")
    @classmethod
    def _workday_spans(cls, value: list[str]) -> list[str]:
        for span in value:
            _parse_span(span)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def is_open(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone))
        day = local.date()
        if day in self.holidays:
            return False
        spans = (self.workday if day in self.make_up_days
                 else self.weekly.get(DAYS[local.weekday()], []))
        clock = local.time()
        return any(start <= clock < end for start, end in map(_parse_span, spans))


def _parse_span(span: str) -> tuple[time, time]:
    found = _SPAN.match(span)
    if not found:
        raise ValueError(f"span {span!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = map(int, found.groups())
    if h2 == 24 and m2 == 0:
        h2, m2 = 23, 59
    if not (h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60):
        raise ValueError(f"span {span!r} has an impossible time")
    start, end = time(h1, m1), time(h2, m2, 59 if (h2, m2) == (23, 59) else 0)
    if end <= start:
        raise ValueError(f"span {span!r} ends before it starts")
    return start, end


class Wrapup(_Model):
    # None: the service default (ACD_WRAPUP_SECONDS), so one setting covers every queue
    # that does not say otherwise.
    seconds: Seconds | None = None
    # discretionary: the agent may end it early (ready / not ready); mandatory: they may not.
    mode: Literal["discretionary", "mandatory"] = "discretionary"
    # How much longer one extension request adds, and the cap on the total.
    extend_seconds: PositiveSeconds = 60.0
    max_seconds: PositiveSeconds = 600.0


def wrapup_of(config: RoutingConfig, queue: str, default_seconds: float) -> Wrapup:
    """The wrap-up policy for a call answered from ``queue``, its length filled in."""
    found = config.queue(queue)
    policy = found.wrapup if found is not None else Wrapup()
    if policy.seconds is None:
        policy = policy.model_copy(update={"seconds": default_seconds})
    return policy


class QueueConfig(_Model):
    # Required skill → minimum level; the first one indexes the agent search.
    skills: Annotated[dict[Name, Level], Field(min_length=1)]
    # Required at first, dropped by a step with ``drop_optional``.
    optional_skills: dict[Name, Level] = {}
    strategy: Strategy = Strategy.LONGEST_IDLE
    credits: Credits = Credits()
    # Weight of a second waited in the score; higher lets waiting time catch up with credits.
    wait_weight: Annotated[float, Field(gt=0, le=1e6)] = 1.0
    preferred_agent: PreferredAgent = PreferredAgent()
    virtual_hold: VirtualHold = VirtualHold()
    steps: list[Step] = []
    limits: Limits = Limits()
    hours: Hours | None = None
    wrapup: Wrapup = Wrapup()
    # Average handle time for the wait estimate until enough calls have been measured.
    handle_seconds: PositiveSeconds = 180.0

    @field_validator("steps")
    @classmethod
    def _ascending(cls, steps: list[Step]) -> list[Step]:
        thresholds = [s.after_seconds for s in steps]
        if thresholds != sorted(thresholds) or len(set(thresholds)) != len(thresholds):
            raise ValueError("steps must have strictly increasing after_seconds")
        return steps


class RoutingConfig(_Model):
    queues: dict[Name, QueueConfig] = {}
    # A call for a queue not configured gets a queue requiring the skill of the same name at
    # level 1 with these settings (the walking skeleton's "one queue per skill").
    auto_queues: bool = True
    default_strategy: Strategy = Strategy.LONGEST_IDLE
    # ``now`` + this = POSIX seconds; only business hours and "today" need wall time. The
    # service passes POSIX seconds (0); a simulator passes the trace start.
    # Bounded to the years datetime holds: a huge one made every later login fail.
    clock_epoch: float = Field(default=0.0, ge=-2_208_988_800, le=7_258_118_400)
    # Day boundary for "calls today" (fewest_calls).
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return Hours._zone(value)

    @model_validator(mode="after")
    def _references(self) -> RoutingConfig:
        for name, queue in self.queues.items():
            for index, step in enumerate(queue.steps):
                for other in step.add_queues:
                    if other not in self.queues and not self.auto_queues:
                        raise ValueError(f"queue {name} step {index + 1}: unknown queue {other}")
                unknown = set(step.min_levels) - set(queue.skills) - set(queue.optional_skills)
                if unknown:
                    raise ValueError(f"queue {name} step {index + 1}: min_levels names "
                                     f"skills the queue does not use: {sorted(unknown)}")
            for action in (queue.limits.on_max_length, queue.limits.on_max_wait,
                           queue.limits.on_no_agents, queue.limits.on_closed):
                if (action is not None and action.queue is not None
                        and action.queue not in self.queues and not self.auto_queues):
                    raise ValueError(f"queue {name}: overflow to unknown queue {action.queue}")
        return self

    def queue(self, name: str) -> QueueConfig | None:
        found = self.queues.get(name)
        if found is None and self.auto_queues:
            return QueueConfig(skills={name: 1}, strategy=self.default_strategy)
        return found


def requirements(config: RoutingConfig, name: str) -> list[list[dict[str, int]]]:
    """Per step (0 = on arrival), the alternative skill requirements an agent may meet."""
    queue = config.queue(name)
    if queue is None:
        return []
    required, optional = dict(queue.skills), dict(queue.optional_skills)
    extra: list[dict[str, int]] = []
    out = [[{**required, **optional}]]
    for step in queue.steps:
        for skill, level in step.min_levels.items():
            if skill in required:
                required[skill] = level
            else:
                optional[skill] = level
        if step.drop_optional:
            optional = {}
        for other in step.add_queues:
            other_queue = config.queue(other)
            if other_queue is not None and other != name:
                extra.append({**other_queue.skills, **other_queue.optional_skills})
        out.append([{**required, **optional}, *extra])
    return out


def config_warnings(config: RoutingConfig, agent_skills: list[dict[str, int]]) -> list[str]:
    """Steps no known agent can serve: accepted (agents may be hired or trained), but said."""
    warnings = []
    for name in config.queues:
        for index, alternatives in enumerate(requirements(config, name)):
            if not any(all(skills.get(s, 0) >= lvl for s, lvl in need.items())
                       for need in alternatives for skills in agent_skills):
                missing = sorted({s for need in alternatives for s, lvl in need.items()
                                  if not any(k.get(s, 0) >= lvl for k in agent_skills)})
                where = "on arrival" if index == 0 else f"at step {index}"
                warnings.append(f"queue {name} {where}: no agent meets it "
                                f"(nobody has {', '.join(missing) or 'that combination'})")
    return warnings
