"""When and whom a callback may dial: allowed hours, statutory holidays, deny list, daily cap."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from services.workorder.domain.calendar import WorkCalendar

INTERNATIONAL = "international"
PREMIUM = "premium"
INVALID = "invalid"
# What people write between digits; dropped before a number is checked, counted or dialled.
SEPARATORS = {ord(c): None for c in " \t\r\n-.()/"}
E164 = re.compile(r"\+[0-9]{3,15}")
# A national mobile number's length (without the country code).
MOBILE_DIGITS = 11


@dataclass(frozen=True)
class CallingRules:
    start: time = time(8, 0)
    end: time = time(21, 0)
    # Premium-rate and other never-dial prefixes (matched after stripping the home prefix).
    deny_prefixes: tuple[str, ...] = ("168", "1900", "1259")
    home_prefix: str = "+86"
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


def normalized(number: str, rules: CallingRules) -> str | None:
    """The number in E.164, as it is checked, counted and dialled: full-width digits and
    punctuation folded (NFKC), separators dropped; ``00`` written for ``+``; a national number
    gets the home country code (its trunk ``0`` dropped), and so does one written with the
    code but no ``+`` (``86`` and a mobile number). None: not a phone number."""
    n = unicodedata.normalize("NFKC", number).translate(SEPARATORS)
    code = rules.home_prefix.lstrip("+")
    if n.startswith("00"):
        n = "+" + n[2:]
    elif n.startswith(code) and len(n) == len(code) + MOBILE_DIGITS:
        n = "+" + n
    elif not n.startswith("+"):
        n = rules.home_prefix + n.removeprefix("0")
    return n if E164.fullmatch(n) else None


def denied(number: str, rules: CallingRules) -> str | None:
    """Why a number must never be dialled (however it is spelled), or None."""
    n = normalized(number, rules)
    if n is None:
        return INVALID
    if not n.startswith(rules.home_prefix):
        return INTERNATIONAL
    national = n[len(rules.home_prefix):]
    if any(national.startswith(p) for p in rules.deny_prefixes):
        return PREMIUM
    return None


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
