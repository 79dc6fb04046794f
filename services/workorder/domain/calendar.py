"""The working-day calendar: weekends, statutory holidays and make-up working days (调休).

Deadlines such as "answer the customer within 2 working days" run on this calendar. A year's
schedule is data (``calendars/<year>.yaml``, or ``PUT /v1/calendars/{year}``); a year without
one falls back to plain weekends, which is what a deadline far in the future needs until the
State Council publishes that year's notice.

Working time is measured in seconds that fall on working days (local midnight to midnight), so
"2 working days" from Friday 10:00 is Tuesday 10:00, and a case opened on a holiday starts its
working-day clocks at the next working day's midnight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.errors import Invalid

DEFAULT_TZ = "Asia/Shanghai"
# A deadline further than this is a configuration error, not a date to search for.
MAX_DAYS = 3660


@dataclass(frozen=True)
class YearSchedule:
    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str = ""
    provisional: bool = False

    def document(self) -> dict[str, Any]:
        return {"year": self.year, "provisional": self.provisional, "source": self.source,
                "holidays": sorted(d.isoformat() for d in self.holidays),
                "workdays": sorted(d.isoformat() for d in self.workdays)}


def _dates(values: Any, name: str, year: int) -> frozenset[date]:
    if not isinstance(values, list):
        raise Invalid(name, f"{name} must be a list of dates")
    out = set()
    for i, value in enumerate(values):
        try:
            day = value if isinstance(value, date) else date.fromisoformat(str(value))
        except ValueError:
            raise Invalid(f"{name}.{i}", f"{value!r} is not a date (YYYY-MM-DD)") from None
        if day.year != year:
            raise Invalid(f"{name}.{i}", f"{day} is not in {year}")
        out.add(day)
    return frozenset(out)


def parse_year(doc: Mapping[str, Any], year: int | None = None) -> YearSchedule:
    """Validate a year's schedule document; raises :class:`Invalid` naming the field."""
    raw_year = doc.get("year", year)
    if not isinstance(raw_year, int) or not 1990 <= raw_year <= 2200:
        raise Invalid("year", "year must be an integer between 1990 and 2200")
    if year is not None and raw_year != year:
        raise Invalid("year", f"the document is for {raw_year}, not {year}")
    unknown = set(doc) - {"year", "holidays", "workdays", "source", "provisional"}
    if unknown:
        raise Invalid(sorted(unknown)[0], "unknown field")
    holidays = _dates(doc.get("holidays", []), "holidays", raw_year)
    workdays = _dates(doc.get("workdays", []), "workdays", raw_year)
    both = holidays & workdays
    if both:
        raise Invalid("workdays", f"{min(both)} is both a holiday and a make-up working day")
    for day in sorted(workdays):
        # A make-up day replaces a weekend day; a weekday is a working day anyway.
        if day.weekday() < 5:
            raise Invalid("workdays", f"{day} is a weekday; make-up working days are weekend days")
    provisional = doc.get("provisional", False)
    if not isinstance(provisional, bool):
        raise Invalid("provisional", "provisional must be true or false")
    return YearSchedule(raw_year, holidays, workdays, str(doc.get("source") or ""), provisional)


@dataclass(frozen=True)
class WorkCalendar:
    years: Mapping[int, YearSchedule] = field(default_factory=dict)
    tz_name: str = DEFAULT_TZ

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.tz_name)

    def with_year(self, schedule: YearSchedule) -> WorkCalendar:
        return WorkCalendar({**self.years, schedule.year: schedule}, self.tz_name)

    @classmethod
    def of(cls, schedules: Iterable[YearSchedule], tz_name: str = DEFAULT_TZ) -> WorkCalendar:
        return cls({s.year: s for s in schedules}, tz_name)

    def is_holiday(self, day: date) -> bool:
        """A statutory day off (not a plain weekend)."""
        schedule = self.years.get(day.year)
        return schedule is not None and day in schedule.holidays

    def is_working_day(self, day: date) -> bool:
        schedule = self.years.get(day.year)
        if schedule is not None:
            if day in schedule.holidays:
                return False
            if day in schedule.workdays:
                return True
        return day.weekday() < 5

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def _midnight_after(self, moment: datetime) -> datetime:
        day = self.local_date(moment) + timedelta(days=1)
        return datetime.combine(day, time(0), tzinfo=self.tz).astimezone(UTC)

    def working_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds between ``start`` and ``end`` that fall on working days."""
        total = 0.0
        cursor = start.astimezone(UTC)
        end = end.astimezone(UTC)
        for _ in range(MAX_DAYS + 1):
            if cursor >= end:
                return total
            boundary = min(self._midnight_after(cursor), end)
            if self.is_working_day(self.local_date(cursor)):
                total += (boundary - cursor).total_seconds()
            cursor = boundary
        raise ValueError("span longer than the calendar handles")

    def add_working_seconds(self, start: datetime, seconds: float) -> datetime:
        """The moment by which ``seconds`` of working time have passed since ``start``."""
        remaining = max(0.0, seconds)
        cursor = start.astimezone(UTC)
        for _ in range(MAX_DAYS + 1):
            boundary = self._midnight_after(cursor)
            if self.is_working_day(self.local_date(cursor)):
                available = (boundary - cursor).total_seconds()
                if remaining <= available:
                    return cursor + timedelta(seconds=remaining)
                remaining -= available
            cursor = boundary
        raise ValueError(f"no deadline within {MAX_DAYS} days")

    def add_working_days(self, start: datetime, days: float) -> datetime:
        return self.add_working_seconds(start, days * 86400)
