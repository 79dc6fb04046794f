"""When and whom a callback may dial: allowed hours, statutory holidays, daily cap; the deny
list and the one spelling per number are the suite's (``shared.dialing``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from services.workorder.domain.calendar import WorkCalendar
from shared.dialing import INTERNATIONAL, INVALID, PREMIUM, NumberPolicy, denied, normalized

__all__ = [
    "INTERNATIONAL",
    "INVALID",
    "PREMIUM",
    "CallingRules",
    "denied",
    "is_allowed",
    "local_day_bounds",
    "next_allowed",
    "next_day_window",
    "normalized",
]


@dataclass(frozen=True)
class CallingRules(NumberPolicy):
    """The suite's number policy (``shared.dialing``) and a callback's own rules."""

    start: time = time(8, 0)
    end: time = time(21, 0)
    daily_cap: int = 20
    skip_holidays: bool = True

    @classmethod
    def parse_hours(cls, hours: str) -> tuple[time, time]:
        """``"08:00-21:00"``; ``"00:00-24:00"`` means any time of day."""
        first, _, second = hours.partition("-")
        start = time.fromisoformat(first.strip())
        end = time.max if second.strip() == "24:00" else time.fromisoformat(second.strip())
        if end <= start:
            raise ValueError("calling hours must end after they start")
        return start, end


def is_allowed(moment: datetime, rules: CallingRules, cal: WorkCalendar) -> bool:
    local = moment.astimezone(cal.tz)
    if rules.skip_holidays and cal.is_holiday(local.date()):
        return False
    return rules.start <= local.time() < rules.end


def next_allowed(moment: datetime, rules: CallingRules, cal: WorkCalendar) -> datetime:
    """``moment`` if a call may go out then, else the start of the next allowed window."""
    if is_allowed(moment, rules, cal):
        return moment
    local = moment.astimezone(cal.tz)
    day = local.date() if local.time() < rules.start else local.date() + timedelta(days=1)
    for _ in range(400):
        if not (rules.skip_holidays and cal.is_holiday(day)):
            return datetime.combine(day, rules.start, tzinfo=cal.tz).astimezone(UTC)
        day += timedelta(days=1)
    raise ValueError("no allowed calling window within a year")


def next_day_window(moment: datetime, rules: CallingRules, cal: WorkCalendar) -> datetime:
    """The first allowed moment of the next local day (the daily cap is spent)."""
    local = moment.astimezone(cal.tz)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=cal.tz)
    return next_allowed(midnight.astimezone(UTC), rules, cal)


def local_day_bounds(moment: datetime, cal: WorkCalendar) -> tuple[datetime, datetime]:
    local = moment.astimezone(cal.tz)
    start = datetime.combine(local.date(), time(0), tzinfo=cal.tz).astimezone(UTC)
    return start, start + timedelta(days=1)
