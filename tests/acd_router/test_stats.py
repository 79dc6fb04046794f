"""The time range a statistics request names (domain/stats.py ``resolve_range``), one table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.acd_router.domain.stats import Interval, Window, resolve_range
from shared.errors import Invalid

NOW = datetime(2026, 7, 15, 10, 7, 30, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")  # CET/CEST: 2026's DST days are 29 March and 25 October
KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30: its hours start at half past in UTC


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(("zone", "window", "interval", "start", "begins", "ends", "meta"), [
    # Neither: the sliding 15 minutes ending now.
    (BERLIN, None, None, None, NOW - timedelta(minutes=15), NOW,
     {"kind": "window", "length": "15m"}),
    (BERLIN, "1h", None, None, NOW - timedelta(hours=1), NOW,
     {"kind": "window", "length": "1h"}),
    # An interval without start: the current one, not complete yet.
    (BERLIN, None, "15m", None, utc(2026, 7, 15, 10, 0), utc(2026, 7, 15, 10, 15),
     {"kind": "interval", "length": "15m", "complete": False}),
    # Hours are the zone's: 08:50 in Kolkata lies in 08:00-09:00 local, 02:30-03:30 UTC.
    (KOLKATA, None, "1h", utc(2026, 7, 15, 3, 20), utc(2026, 7, 15, 2, 30),
     utc(2026, 7, 15, 3, 30), {"kind": "interval", "length": "1h", "complete": True}),
    # Wall-clock days: the spring DST day is 23 hours long, the autumn one 25.
    (BERLIN, None, "1d", datetime(2026, 3, 29, 12, 0, tzinfo=BERLIN),
     utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 22, 0),
     {"kind": "interval", "length": "1d", "complete": True}),
    (BERLIN, None, "1d", utc(2026, 10, 25, 12, 0), utc(2026, 10, 24, 22, 0),
     utc(2026, 10, 25, 23, 0), {"kind": "interval", "length": "1d", "complete": False}),
])
def test_resolve_range(zone: ZoneInfo, window: Window | None, interval: Interval | None,
                       start: datetime | None, begins: datetime, ends: datetime,
                       meta: dict[str, object]) -> None:
    span, where = resolve_range(NOW, zone, window, interval, start)
    assert (span.start, span.end) == (begins.timestamp(), ends.timestamp())
    assert (where["start"], where["end"]) == (begins, ends)
    assert {key: where[key] for key in meta} == meta


@pytest.mark.parametrize(("window", "interval", "start", "field"), [
    ("15m", "1h", None, "window"),
    ("15m", None, utc(2026, 7, 15, 9, 0), "window"),
    (None, "1h", datetime(2026, 7, 15, 9, 0), "start"),  # naive: which zone's 09:00?
])
def test_resolve_range_refuses(window: Window | None, interval: Interval | None,
                               start: datetime | None, field: str) -> None:
    with pytest.raises(Invalid) as refused:
        resolve_range(NOW, BERLIN, window, interval, start)
    assert refused.value.field == field
