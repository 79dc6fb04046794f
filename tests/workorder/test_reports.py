"""Department reports and the overdue bulletin: exact counts on a constructed day of cases
(fake clock, 2026-07-15 08:00 Asia/Shanghai), CSV that parses back, period boundaries."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.workorder.domain import reports as rd
from services.workorder.domain.calendar import WorkCalendar
from services.workorder.domain.reports import CallbackFacts, CaseFacts, Period, Resolution
from tests.conftest import eventually
from tests.workorder.test_service import Harness, harness

__all__ = ["harness"]

CAL = WorkCalendar.of([])
T0 = datetime(2026, 7, 15, 0, 0, tzinfo=UTC)  # the harness's fake clock: 08:00 in Shanghai


# -- periods (pure) -------------------------------------------------------------------------

@pytest.mark.parametrize(("period", "day", "start", "end", "label"), [
    (Period.DAY, date(2026, 7, 15), datetime(2026, 7, 14, 16, tzinfo=UTC),
     datetime(2026, 7, 15, 16, tzinfo=UTC), "2026-07-15"),
    # Wednesday -> its Monday-to-Sunday week
    (Period.WEEK, date(2026, 7, 15), datetime(2026, 7, 12, 16, tzinfo=UTC),
     datetime(2026, 7, 19, 16, tzinfo=UTC), "2026-W29"),
    # A Sunday belongs to the week that began on the Monday before it
    (Period.WEEK, date(2026, 7, 19), datetime(2026, 7, 12, 16, tzinfo=UTC),
     datetime(2026, 7, 19, 16, tzinfo=UTC), "2026-W29"),
    (Period.MONTH, date(2026, 7, 31), datetime(2026, 6, 30, 16, tzinfo=UTC),
     datetime(2026, 7, 31, 16, tzinfo=UTC), "2026-07"),
    (Period.MONTH, date(2026, 12, 5), datetime(2026, 11, 30, 16, tzinfo=UTC),
     datetime(2026, 12, 31, 16, tzinfo=UTC), "2026-12"),
])
def test_periods_are_local_days_weeks_and_months(period: Period, day: date, start: datetime,
                                                 end: datetime, label: str) -> None:
    w = rd.window(period, day, CAL)
    assert (w.start, w.end, w.label) == (start, end, label)


def test_a_case_counts_in_the_local_day_it_happened() -> None:
    # 23:59:59 on the 14th in Shanghai is 15:59:59 UTC; 00:00 on the 15th is 16:00 UTC.
    late = CaseFacts("late", None, "C1", datetime(2026, 7, 14, 15, 59, 59, tzinfo=UTC))
    early = CaseFacts("early", None, "C2", datetime(2026, 7, 14, 16, 0, tzinfo=UTC))
    day14 = rd.window(Period.DAY, date(2026, 7, 14), CAL)
    day15 = rd.window(Period.DAY, date(2026, 7, 15), CAL)
    assert [rd.created(c, day14) for c in (late, early)] == [True, False]
    assert [rd.created(c, day15) for c in (late, early)] == [False, True]


def test_measures_on_constructed_facts() -> None:
    w = rd.window(Period.DAY, date(2026, 7, 15), CAL)
    at = T0 + timedelta(hours=1)
    yesterday = T0 - timedelta(days=1)
    cases = [
        # first contact: resolved from created on its call, satisfied
        CaseFacts("a", None, "C1", at, (Resolution(at, "created"),), (at,), (), (),
                  (CallbackFacts(at, "completed", "satisfied", at),)),
        # dispatched, resolved, unreachable -> reopened (escalated callback), overdue
        CaseFacts("b", "crew", "C2", at, (Resolution(at, "accepted"),), (), (at,), (at,),
                  (CallbackFacts(at, "unreachable", None, at),)),
        # created yesterday, first resolved yesterday, resolved again today: not a candidate
        CaseFacts("c", "crew", "C3", yesterday,
                  (Resolution(yesterday, "created"), Resolution(at, "reopened")), (), (), (),
                  (CallbackFacts(yesterday, "completed", "dissatisfied", yesterday),
                   CallbackFacts(at, "pending", None, None))),
        # no call (a callback_request case): never an FCR candidate
        CaseFacts("d", None, None, at, (Resolution(at, "created"),)),
    ]
    rows, total = rd.department_report(cases, w)
    front, crew = (r.as_dict() for r in rows)
    assert front["department"] is None and crew["department"] == "crew"
    assert (front["created"], front["resolved"], front["closed"]) == (2, 2, 1)
    assert (front["first_contact_candidates"], front["first_contact_resolved"]) == (1, 1)
    assert (crew["created"], crew["resolved"], crew["reopened"], crew["overdue"]) == (1, 2, 1, 1)
    assert (crew["callbacks_owed"], crew["callbacks_escalated"], crew["callbacks_pending"]) == (
        2, 1, 1)
    assert crew["callback_completion_rate"] == 0.5
    assert crew["satisfaction"] == {"satisfied": 0, "neutral": 0, "dissatisfied": 0}
    assert (crew["first_contact_candidates"], crew["first_contact_resolution_rate"]) == (1, 0.0)
    assert total.callbacks_owed == 3 and total.callback_completion_rate == pytest.approx(2 / 3)


# -- through the service --------------------------------------------------------------------

async def post(h: Harness, path: str, body: dict[str, Any], *scopes: str) -> Any:
    response = await h.client.post(path, json=body, headers=h.headers(*scopes))
    assert response.status_code in (200, 201), response.text
    return response.json()


async def constructed_day(h: Harness) -> dict[str, str]:
    """Six cases on 2026-07-15 (times relative to T0 = 08:00 local):

    - A repair, resolved on its call (first contact), survey satisfied -> closed
    - B repair, dispatched to crew-7, accepted, resolved; callback unreachable -> reopened
    - C repair, dispatched to crew-7, never accepted: acceptance overdue at +10 min
    - D consultation, dispatched to billing, resolved; survey dissatisfied -> reopened
    - E repair, never dispatched: dispatch overdue at +15 min
    - F consultation, resolved on its call at +16 min; callback still pending
    """
    await h.put_customer()
    ids = {}
    for key, order_type, call in (("A", "repair", "C1"), ("B", "repair", "C2"),
                                  ("C", "repair", "C3"), ("D", "consultation", "C4"),
                                  ("E", "repair", "C5")):
        # Separate faults of one customer: each keeps its own order.
        ids[key] = (await h.new_order(type=order_type, call_id=call,
                                      standalone=True))["order_id"]
    await h.resolve(ids["A"])
    await post(h, f"/v1/orders/{ids['B']}/dispatch", {"department": "crew-7"})
    await post(h, f"/v1/orders/{ids['B']}/accept", {"owner": "crew-7/lee"})
    await h.resolve(ids["B"])
    await post(h, f"/v1/orders/{ids['C']}/dispatch", {"department": "crew-7"})
    await post(h, f"/v1/orders/{ids['D']}/dispatch", {"department": "billing"})
    await h.resolve(ids["D"])

    h.clock.advance(30)  # first callback attempts of A, B, D
    requests = {r["order_id"]: r for r in await h.requests(3)}
    await h.answer(requests[ids["A"]], "satisfied")
    await h.answer(requests[ids["D"]], "dissatisfied")
    await h.origination_failed(requests[ids["B"]])
    for attempt in (2, 3):
        h.clock.advance(120)
        await eventually(lambda n=attempt: [r for r in h.events("workorder.callback.requested")
                                            if r["order_id"] == ids["B"] and r["attempt"] == n])
        request = next(r for r in h.events("workorder.callback.requested")
                       if r["order_id"] == ids["B"] and r["attempt"] == attempt)
        await h.origination_failed(request)
    for key, state in (("A", "closed"), ("B", "reopened"), ("D", "reopened")):
        await eventually(lambda k=key, s=state: h.order_state(ids[k]), timeout=5)
        assert await h.order_state(ids[key]) == state

    h.clock.advance(960 - 270)  # T0 + 16 min: C's acceptance and E's dispatch are overdue
    await eventually(lambda: len([e for e in h.events("workorder.sla.escalated")
                                  if e["order_id"] in (ids["C"], ids["E"])]) >= 3)
    ids["F"] = (await h.new_order(type="consultation", call_id="C6"))["order_id"]
    await h.resolve(ids["F"])
    return ids


# E's dispatch clock (15 min of wall time) ran from 08:00 to midnight: 15 h 45 min over.
PAST_E_OVERDUE = 16 * 3600.0 - 15 * 60


def row_of(report: dict[str, Any], department: str | None) -> dict[str, Any]:
    return next(r for r in report["departments"] if r["department"] == department)


async def test_department_report_counts_the_constructed_day(harness: Harness) -> None:
    h = harness
    await constructed_day(h)
    response = await h.client.get("/v1/reports/departments",
                                  params={"period": "day", "date": "2026-07-15"},
                                  headers=h.headers("supervisor"))
    assert response.status_code == 200, response.text
    report = response.json()
    # Local midnights, shown with their offset.
    assert (report["start"], report["end"]) == ("2026-07-15T00:00:00+08:00",
                                                "2026-07-16T00:00:00+08:00")
    assert [r["department"] for r in report["departments"]] == [None, "billing", "crew-7"]
    front, billing, crew = (row_of(report, d) for d in (None, "billing", "crew-7"))
    no_answers = {"satisfied": 0, "neutral": 0, "dissatisfied": 0}
    assert front == {
        "department": None, "created": 3, "resolved": 2, "closed": 1, "reopened": 0,
        "overdue": 1, "callbacks_owed": 2, "callbacks_completed": 1, "callbacks_escalated": 0,
        "callbacks_pending": 1, "callback_completion_rate": 0.5,
        "satisfaction": {**no_answers, "satisfied": 1}, "first_contact_candidates": 2,
        "first_contact_resolved": 2, "first_contact_resolution_rate": 1.0}
    assert crew == {
        "department": "crew-7", "created": 2, "resolved": 1, "closed": 0, "reopened": 1,
        "overdue": 1, "callbacks_owed": 1, "callbacks_completed": 0, "callbacks_escalated": 1,
        "callbacks_pending": 0, "callback_completion_rate": 1.0, "satisfaction": no_answers,
        "first_contact_candidates": 1, "first_contact_resolved": 0,
        "first_contact_resolution_rate": 0.0}
    assert billing == {
        "department": "billing", "created": 1, "resolved": 1, "closed": 0, "reopened": 1,
        "overdue": 0, "callbacks_owed": 1, "callbacks_completed": 1, "callbacks_escalated": 0,
        "callbacks_pending": 0, "callback_completion_rate": 1.0,
        "satisfaction": {**no_answers, "dissatisfied": 1}, "first_contact_candidates": 1,
        "first_contact_resolved": 0, "first_contact_resolution_rate": 0.0}
    total = report["total"]
    assert (total["created"], total["resolved"], total["closed"], total["reopened"],
            total["overdue"]) == (6, 4, 1, 2, 2)
    assert total["callback_completion_rate"] == 0.75
    assert (total["first_contact_resolved"], total["first_contact_candidates"]) == (2, 4)

    # The same cases in the week and the month; nothing on the local day before.
    for period in ("week", "month"):
        wider = (await h.client.get("/v1/reports/departments",
                                    params={"period": period, "date": "2026-07-15"},
                                    headers=h.headers("integrator"))).json()
        assert wider["total"] == total and wider["departments"] == report["departments"]
    before = (await h.client.get("/v1/reports/departments",
                                 params={"period": "day", "date": "2026-07-14"},
                                 headers=h.headers("supervisor"))).json()
    assert before["departments"] == [] and before["total"]["created"] == 0
    # Without a date: today on the suite clock, in Shanghai.
    today = (await h.client.get("/v1/reports/departments",
                                headers=h.headers("supervisor"))).json()
    assert today["date"] == "2026-07-15" and today["total"] == total
    refused = await h.client.get("/v1/reports/departments", headers=h.headers("agent"))
    assert refused.status_code == 403
    bad = await h.client.get("/v1/reports/departments", params={"period": "year"},
                             headers=h.headers("supervisor"))
    assert bad.status_code == 422


def parse_csv(response: Any) -> list[dict[str, str]]:
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


async def test_department_report_as_csv(harness: Harness) -> None:
    h = harness
    await constructed_day(h)
    params = {"period": "day", "date": "2026-07-15"}
    by_accept = await h.client.get("/v1/reports/departments", params=params,
                                   headers={**h.headers("supervisor"), "Accept": "text/csv"})
    by_query = await h.client.get("/v1/reports/departments", params={**params, "format": "csv"},
                                  headers=h.headers("supervisor"))
    assert by_accept.status_code == by_query.status_code == 200
    assert by_accept.content == by_query.content
    assert by_accept.headers["content-disposition"] == (
        'attachment; filename="workorder-departments-day-2026-07-15.csv"')
    assert by_accept.content.startswith("\ufeff".encode())  # Excel reads it as UTF-8
    rows = parse_csv(by_accept)
    assert list(rows[0]) == list(rd.DEPARTMENT_COLUMNS)
    assert [r["department"] for r in rows] == ["", "billing", "crew-7", "(total)"]
    crew = rows[2]
    assert (crew["created"], crew["reopened"], crew["overdue"], crew["callbacks_escalated"],
            crew["callback_completion_rate"], crew["satisfaction_dissatisfied"]) == (
        "2", "1", "1", "1", "1", "0")
    assert rows[1]["satisfaction_dissatisfied"] == "1"
    assert (rows[3]["created"], rows[3]["callback_completion_rate"]) == ("6", "0.75")
    week = await h.client.get("/v1/reports/departments",
                              params={"period": "week", "date": "2026-07-15", "format": "csv"},
                              headers=h.headers("supervisor"))
    assert 'filename="workorder-departments-week-2026-W29.csv"' in (
        week.headers["content-disposition"])


async def test_overdue_bulletin_daily_and_weekly(harness: Harness) -> None:
    h = harness
    ids = await constructed_day(h)
    response = await h.client.get("/v1/reports/overdue",
                                  params={"period": "day", "date": "2026-07-15"},
                                  headers=h.headers("supervisor"))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["as_of"] == "2026-07-15T08:16:00+08:00"  # now: the day is not over
    assert [d["department"] for d in report["departments"]] == [None, "crew-7"]
    front, crew = report["departments"]
    assert (front["cases"], front["clocks"], front["by_level"]) == (1, 1, {"1": 1})
    [e] = front["items"]
    assert (e["order_id"], e["clock"], e["level"], e["level_name"], e["overdue_seconds"],
            e["owner"], e["still_running"]) == (ids["E"], "dispatch", 1, "team_lead", 60.0,
                                                None, True)
    assert e["due_at"] == "2026-07-15T00:15:00Z"
    [c] = crew["items"]
    # 10 min acceptance budget, 16 min run: 6 min over, past level 2 (at 15 min).
    assert (c["order_id"], c["clock"], c["level"], c["level_name"], c["overdue_seconds"]) == (
        ids["C"], "acceptance", 2, "department_head", 360.0)
    assert report["total"] == {"cases": 2, "clocks": 2}

    # The day before had nothing; the week holds the same clocks.
    before = (await h.client.get("/v1/reports/overdue",
                                 params={"period": "day", "date": "2026-07-14"},
                                 headers=h.headers("supervisor"))).json()
    assert before["departments"] == [] and before["as_of"] == "2026-07-15T00:00:00+08:00"
    week = (await h.client.get("/v1/reports/overdue",
                               params={"period": "week", "date": "2026-07-15"},
                               headers=h.headers("supervisor"))).json()
    assert week["departments"] == report["departments"]
    month = await h.client.get("/v1/reports/overdue", params={"period": "month"},
                               headers=h.headers("supervisor"))
    assert month.status_code == 422

    # Accepting C later stops its acceptance clock; it stays in today's bulletin (it was
    # overdue today, still at level 2) but shows as no longer running.
    await post(h, f"/v1/orders/{ids['C']}/accept", {"owner": "crew-7/wang"})
    csv_response = await h.client.get("/v1/reports/overdue",
                                      params={"period": "day", "date": "2026-07-15",
                                              "format": "csv"},
                                      headers=h.headers("integrator"))
    assert csv_response.headers["content-disposition"] == (
        'attachment; filename="workorder-overdue-day-2026-07-15.csv"')
    rows = parse_csv(csv_response)
    assert list(rows[0]) == list(rd.BULLETIN_COLUMNS)
    assert [(r["department"], r["order_id"], r["clock"], r["level"], r["owner"],
             r["still_running"], r["overdue_seconds"]) for r in rows] == [
        ("", ids["E"], "dispatch", "1", "", "true", "60"),
        ("crew-7", ids["C"], "acceptance", "2", "crew-7/wang", "false", "360")]

    # Next morning E is dispatched at last. The 15th's bulletin is now a past period's: E's
    # clock as it stood at that day's end (still running, further over), not as it is now.
    h.clock.advance(24 * 3600)
    await post(h, f"/v1/orders/{ids['E']}/dispatch", {"department": "crew-9"})
    past = (await h.client.get("/v1/reports/overdue",
                               params={"period": "day", "date": "2026-07-15"},
                               headers=h.headers("supervisor"))).json()
    assert past["as_of"] == "2026-07-16T00:00:00+08:00"
    # E's dispatch clock (its arrival clock may have escalated too by now: the timer fires it
    # once the day has passed, on its own schedule).
    e_then = next(i for d in past["departments"] for i in d["items"]
                  if i["order_id"] == ids["E"] and i["clock"] == "dispatch")
    assert (e_then["clock_state"], e_then["still_running"]) == ("running", True)
    assert e_then["overdue_seconds"] == PAST_E_OVERDUE
    today = (await h.client.get("/v1/reports/overdue",
                                params={"period": "day", "date": "2026-07-16"},
                                headers=h.headers("supervisor"))).json()
    e_now = next(i for d in today["departments"] for i in d["items"]
                 if i["order_id"] == ids["E"] and i["clock"] == "dispatch")
    assert (e_now["clock_state"], e_now["still_running"]) == ("stopped", False)


# -- calendars reach other replicas ---------------------------------------------------------

async def test_a_calendar_put_on_one_replica_reaches_another(harness: Harness,
                                                             common: Any) -> None:
    from services.workorder.app import create_app
    from services.workorder.settings import WorkorderSettings
    from shared.bus.memory import MemoryBus
    from tests.conftest import running

    h = harness
    other = create_app(WorkorderSettings(common=common, calendar_poll_seconds=0.05),
                       bus=MemoryBus(), clock=h.clock)
    async with running(other) as replica:
        async def year_2028() -> Any:
            response = await replica.get("/v1/calendars/2028", headers=h.headers())
            return response.json() if response.status_code == 200 else None

        assert await year_2028() is None
        put = await h.client.put("/v1/calendars/2028", json={
            "holidays": ["2028-01-03"], "source": "test"}, headers=h.headers("supervisor"))
        assert put.status_code == 200, put.text
        seen = await eventually(year_2028, timeout=5)
        assert seen["holidays"] == ["2028-01-03"]
        # A second change (same year, new content) is picked up too; shipped years stay.
        await h.client.put("/v1/calendars/2028", json={
            "holidays": ["2028-01-03", "2028-01-04"], "source": "test"},
            headers=h.headers("supervisor"))
        seen = await eventually(lambda: _holidays_two(replica, h), timeout=5)
        assert (await replica.get("/v1/calendars/2026", headers=h.headers())).status_code == 200


async def _holidays_two(replica: Any, h: Harness) -> bool:
    response = await replica.get("/v1/calendars/2028", headers=h.headers())
    return response.status_code == 200 and len(response.json()["holidays"]) == 2
