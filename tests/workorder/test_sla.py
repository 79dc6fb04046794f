"""Table-driven tests of the working-day calendar, SLA clock arithmetic and calling rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import yaml

from services.workorder.domain import dialing, sla
from services.workorder.domain.calendar import WorkCalendar, parse_year
from services.workorder.domain.dialing import CallingRules
from services.workorder.domain.orders import OrderType
from services.workorder.domain.sla import ClockState
from shared.errors import IllegalTransition, Invalid

CALENDARS = Path(__file__).resolve().parents[2] / "services" / "workorder" / "calendars"
POLICY_FILE = CALENDARS.parent / "sla" / "default.yaml"
CAL = WorkCalendar.of([parse_year(yaml.safe_load((CALENDARS / f"{y}.yaml").read_text()), y)
                       for y in (2026, 2027)])
TZ = CAL.tz
TYPES = tuple(t.value for t in OrderType)
POLICY = sla.parse_policy(yaml.safe_load(POLICY_FILE.read_text()), 1, TYPES)


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=TZ)


# -- calendar -------------------------------------------------------------------------------

@pytest.mark.parametrize(("day", "working"), [
    (date(2026, 2, 13), True),    # Friday before the Spring Festival
    (date(2026, 2, 14), True),    # Saturday, make-up working day
    (date(2026, 2, 15), False),   # Sunday, holiday starts
    (date(2026, 2, 16), False),   # Monday in the holiday
    (date(2026, 2, 23), False),   # Monday, last holiday day
    (date(2026, 2, 24), True),    # Tuesday, back to work
    (date(2026, 2, 28), True),    # Saturday, make-up working day
    (date(2026, 3, 1), False),    # plain Sunday
    (date(2026, 10, 8), True),    # Thursday after National Day
    (date(2026, 10, 10), True),   # Saturday, make-up
    (date(2026, 1, 4), True),     # Sunday, make-up after New Year
    (date(2028, 1, 3), True),     # a year without a schedule: weekdays work
    (date(2028, 1, 1), False),    # ... and weekends do not (no holiday known)
])
def test_working_days(day: date, working: bool) -> None:
    assert CAL.is_working_day(day) is working


@pytest.mark.parametrize(("start", "days", "due"), [
    # Friday 10:00 + 2 working days, across a plain weekend -> Tuesday 10:00
    (local(2026, 7, 17, 10), 2, local(2026, 7, 21, 10)),
    # Thursday 12 Feb 15:00 + 1 -> Friday 13 Feb 15:00
    (local(2026, 2, 12, 15), 1, local(2026, 2, 13, 15)),
    # Friday 13 Feb 15:00 + 1 -> Saturday 14 Feb 15:00 (make-up working day counts)
    (local(2026, 2, 13, 15), 1, local(2026, 2, 14, 15)),
    # Saturday 14 Feb 15:00 + 1 -> across the 9-day holiday -> Tuesday 24 Feb 15:00
    (local(2026, 2, 14, 15), 1, local(2026, 2, 24, 15)),
    # filed on a holiday: counting starts at the next working day's midnight
    (local(2026, 2, 18, 9), 2, local(2026, 2, 26, 0)),
    # Thursday before Mid-Autumn (25-27 Sep) -> Tuesday 29 Sep
    (local(2026, 9, 24, 12), 2, local(2026, 9, 29, 12)),
    # Wednesday 30 Sep across National Day (1-7 Oct) -> Thursday 8 Oct
    (local(2026, 9, 30, 12), 1, local(2026, 10, 8, 12)),
    # Friday 9 Oct + 1 -> the make-up Saturday 10 Oct
    (local(2026, 10, 9, 12), 1, local(2026, 10, 10, 12)),
])
def test_add_working_days_across_holidays(start: datetime, days: int, due: datetime) -> None:
    assert CAL.add_working_days(start, days) == due.astimezone(UTC)
    assert CAL.working_seconds(start, due) == pytest.approx(days * 86400)


@pytest.mark.parametrize(("doc", "field"), [
    ({"year": 2026, "holidays": ["2026-02-30"]}, "holidays.0"),
    ({"year": 2026, "holidays": ["2025-12-31"]}, "holidays.0"),
    ({"year": 2026, "workdays": ["2026-02-16"]}, "workdays"),       # a Monday is no make-up day
    ({"year": 2026, "holidays": ["2026-02-14"], "workdays": ["2026-02-14"]}, "workdays"),
    ({"year": 2026, "extra": 1}, "extra"),
])
def test_bad_calendar_documents(doc: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid) as raised:
        parse_year(doc, 2026)
    assert raised.value.field == field


def test_shipped_years_say_their_source() -> None:
    assert not CAL.years[2026].provisional and "国务院办公厅" in CAL.years[2026].source
    assert CAL.years[2027].provisional


# -- SLA clocks -----------------------------------------------------------------------------

START = local(2026, 7, 15, 9)  # a Wednesday


@pytest.mark.parametrize(("order_type", "priority", "timer", "area", "due"), [
    ("repair", "normal", "arrival", "A-017", START + timedelta(minutes=45)),
    ("repair", "normal", "arrival", "R-001", START + timedelta(minutes=90)),
    ("repair", "normal", "arrival", "M-9", START + timedelta(minutes=120)),
    ("repair", "normal", "dispatch", "A-017", START + timedelta(minutes=15)),
    ("repair", "urgent", "resolution", "A-017", START + timedelta(hours=8)),
    ("complaint", "normal", "dispatch", None, local(2026, 7, 16, 9)),         # 1 working day
    ("complaint", "normal", "resolution", None, local(2026, 7, 21, 9)),       # 4 working days
    ("consultation", "normal", "reply", None, local(2026, 7, 17, 9)),         # 2 working days
    ("consultation", "normal", "callback", None, START + timedelta(hours=24)),
    ("praise", "normal", "resolution", None, local(2026, 7, 22, 9)),
])
def test_each_timer_deadline(order_type: str, priority: str, timer: str, area: str | None,
                             due: datetime) -> None:
    spec = POLICY.timer(order_type, priority, timer)
    assert spec is not None
    clock = sla.start(timer, spec, POLICY.area_class(area), now=START, policy=POLICY, cal=CAL)
    assert clock.due_at == due.astimezone(UTC)
    # The urge comes at 80 % of the budget, in the clock's own basis.
    assert clock.next_fire_at is not None
    assert sla.elapsed_at(clock, clock.next_fire_at, CAL) == pytest.approx(0.8 * clock.budget)


def test_switched_off_timers() -> None:
    assert POLICY.timer("callback_request", "normal", "callback") is None
    assert POLICY.timer("complaint", "normal", "arrival") is None


def _arrival() -> sla.Clock:
    spec = POLICY.timer("repair", "normal", "arrival")
    assert spec is not None
    return sla.start("arrival", spec, "urban", now=START, policy=POLICY, cal=CAL)


def test_pause_and_resume_keep_the_time_run() -> None:
    clock = _arrival()  # 45 min budget
    paused = sla.pause(clock, now=START + timedelta(minutes=20), cal=CAL)
    assert (paused.state, paused.elapsed, paused.next_fire_at) == (ClockState.PAUSED, 1200, None)
    # An hour waiting for the customer does not count.
    resumed = sla.resume(paused, now=START + timedelta(minutes=80), policy=POLICY, cal=CAL)
    assert resumed.due_at == (START + timedelta(minutes=105)).astimezone(UTC)
    assert sla.remaining(resumed, START + timedelta(minutes=90), CAL) == pytest.approx(900)
    with pytest.raises(IllegalTransition):
        sla.resume(resumed, now=START, policy=POLICY, cal=CAL)


def test_new_budget_keeps_the_time_run() -> None:
    clock = _arrival()
    later = START + timedelta(minutes=30)
    bigger = sla.rebudget(clock, 90 * 60, now=later, policy=POLICY, cal=CAL)
    assert bigger.elapsed == 1800 and bigger.due_at == (START + timedelta(minutes=90)).astimezone(UTC)


def test_fire_urges_then_escalates_level_by_level() -> None:
    clock = _arrival()  # urge at 36 min, overdue at 45, next levels at 67.5 and 90 min
    clock, fired = sla.fire(clock, now=START + timedelta(minutes=36), policy=POLICY, cal=CAL)
    assert fired.urged and fired.levels == ()
    assert fired.urge_at == (START + timedelta(minutes=36)).astimezone(UTC)
    assert clock.next_fire_at == (START + timedelta(minutes=45)).astimezone(UTC)
    clock, fired = sla.fire(clock, now=START + timedelta(minutes=45), policy=POLICY, cal=CAL)
    assert not fired.urged and fired.levels == (1,) and fired.urge_at is None
    # A late timer (say after a restart) catches up every level passed meanwhile, each with
    # its own due time.
    clock, fired = sla.fire(clock, now=START + timedelta(minutes=95), policy=POLICY, cal=CAL)
    assert fired.levels == (2, 3) and clock.next_fire_at is None
    assert fired.level_at == tuple((START + timedelta(minutes=m)).astimezone(UTC)
                                   for m in (67.5, 90))
    with pytest.raises(IllegalTransition):
        sla.fire(clock, now=START + timedelta(days=1), policy=POLICY, cal=CAL)


def test_stopped_clock_records_elapsed() -> None:
    stopped = sla.stop(_arrival(), now=START + timedelta(minutes=50), cal=CAL)
    assert stopped.state is ClockState.STOPPED and sla.remaining(stopped, START, CAL) == -300


@pytest.mark.parametrize(("doc", "field"), [
    ({"urge_share": 1.5}, "urge_share"),
    ({"defaults": {"arrival": {"minutes": -1}}}, "defaults.arrival.minutes"),
    ({"defaults": {"nap": {"minutes": 1}}}, "defaults.nap"),
    ({"types": {"billing": {}}}, "types.billing"),
    ({"types": {"repair": {"vip": {}}}}, "types.repair.vip"),
    ({"defaults": {"arrival": {"minutes": {"suburb": 5}}}}, "defaults.arrival.minutes.suburb"),
])
def test_bad_policies_name_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid) as raised:
        sla.parse_policy(doc, 2, TYPES)
    assert raised.value.field == field


# -- calling rules --------------------------------------------------------------------------

RULES = CallingRules()


@pytest.mark.parametrize(("number", "reason"), [
    ("+8613800000001", None), ("13800000001", None), ("095598", None),
    ("+14155550100", dialing.INTERNATIONAL), ("0014155550100", dialing.INTERNATIONAL),
    ("16812345678", dialing.PREMIUM), ("+861900123456", dialing.PREMIUM),
    # The security review's spellings of a premium number (H4), all dialled before:
    ("+86\t19001234567", dialing.PREMIUM), ("+86(1900)1234567", dialing.PREMIUM),
    ("+86.1900.1234567", dialing.PREMIUM), ("86 1900 1234567", dialing.PREMIUM),
    ("\uff11\uff19\uff10\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17", dialing.PREMIUM),
    ("not a number", dialing.INVALID), ("", dialing.INVALID),
])
def test_deny_list(number: str, reason: str | None) -> None:
    assert dialing.denied(number, RULES) == reason


@pytest.mark.parametrize(("number", "e164"), [
    ("+8613800000001", "+8613800000001"),
    ("13800000001", "+8613800000001"),
    ("+86 138-0000-0001", "+8613800000001"),
    ("8613800000001", "+8613800000001"),
    ("\uff0b\uff18\uff16\uff11\uff13\uff18\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff11",
     "+8613800000001"),
    ("010-12345678", "+861012345678"),  # a landline: the trunk 0 goes
    ("0014155550100", "+14155550100"),
    ("+86 abc", None),
])
def test_one_spelling_per_number(number: str, e164: str | None) -> None:
    """What the deny list checks, the daily cap counts and CTI dials."""
    assert dialing.normalized(number, RULES) == e164


@pytest.mark.parametrize(("moment", "allowed_at"), [
    (local(2026, 7, 15, 9), local(2026, 7, 15, 9)),          # inside hours
    (local(2026, 7, 15, 7, 59), local(2026, 7, 15, 8)),      # too early
    (local(2026, 7, 15, 21), local(2026, 7, 16, 8)),         # too late
    (local(2026, 7, 18, 10), local(2026, 7, 18, 10)),        # a plain Saturday is fine
    (local(2026, 9, 30, 22), local(2026, 10, 8, 8)),         # over National Day
    (local(2026, 2, 14, 21, 30), local(2026, 2, 24, 8)),     # over the Spring Festival
])
def test_calling_hours(moment: datetime, allowed_at: datetime) -> None:
    assert dialing.next_allowed(moment.astimezone(UTC), RULES, CAL) == allowed_at.astimezone(UTC)


def test_daily_cap_waits_for_the_next_day() -> None:
    assert dialing.next_day_window(local(2026, 7, 15, 10).astimezone(UTC), RULES, CAL) == \
        local(2026, 7, 16, 8).astimezone(UTC)
    assert CallingRules.parse_hours("00:00-24:00") == (time(0), time.max)
