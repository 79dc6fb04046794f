"""Configuration over REST (SLA policy versions, calendar years) and the open-case views."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.workorder.domain import sla
from services.workorder.domain.calendar import parse_year
from services.workorder.handlers import KNOWN_TYPES, Runtime
from services.workorder.handlers.clocks import rebudget_clocks
from services.workorder.repository import config, order_out
from services.workorder.repository.clocks import clock_view
from shared.data_scope import DataScope
from shared.db import Session
from shared.errors import NotFound
from shared.messaging import Transaction
from shared.service import Service


async def policies(session: Session, *, latest: bool) -> list[dict[str, Any]]:
    found = await config.policies(session, latest=latest)
    if not found:
        raise NotFound("sla policy", "latest")
    return found


async def new_policy(tx: Transaction, document: dict[str, Any], actor: str) -> int:
    """Store a new version (validated). Open cases move to it afterwards, in batches
    (:func:`replan_batch`), so a policy change never holds every open case at once."""
    version = await config.lock_next_policy_version(tx)
    sla.parse_policy(document, version, KNOWN_TYPES)
    await config.insert_policy(tx, version, document, actor)
    return version


async def replan_open_cases(service: Service, rt: Runtime, actor: str, batch: int) -> int:
    """Move every open case still on an older policy version, a batch per transaction;
    returns how many moved."""
    moved = 0
    while True:
        async with service.transaction() as tx:
            count = await replan_batch(tx, rt, actor, batch)
        if not count:
            return moved
        moved += count


async def replan_batch(tx: Transaction, rt: Runtime, actor: str, limit: int) -> int:
    """Move up to ``limit`` open cases whose running clocks are on an older policy version to
    the latest one, keeping the time they have already run. Returns how many moved; cases
    another worker holds are left for the next batch."""
    policy = await rt.sla_policy(tx)
    cases = await config.lock_cases_behind(tx, policy.version, limit)
    for case in cases:
        await rebudget_clocks(tx, rt, case, case.priority, actor=actor,
                              reason=f"policy version {policy.version}", policy=policy)
    return len(cases)


def calendar_year(rt: Runtime, year: int) -> dict[str, Any]:
    schedule = rt.calendar.years.get(year)
    if schedule is None:
        raise NotFound("calendar", str(year))
    return schedule.document()


async def put_calendar(tx: Transaction, rt: Runtime, year: int, document: dict[str, Any],
                       actor: str) -> None:
    schedule = parse_year({**document, "year": document.get("year") or year}, year)
    await config.save_calendar(tx, year, schedule.document(), actor)

    async def swap() -> None:
        # Deadlines already planned keep their times; new plans use the new year.
        rt.calendar = rt.calendar.with_year(schedule)

    tx.after_commit(swap)


async def open_cases(session: Session, rt: Runtime, now: datetime, *,
                     customer_account: str | None, owner: str | None, department: str | None,
                     limit: int, scope: DataScope) -> list[dict[str, Any]]:
    cases, open_clocks = await config.open_cases(
        session, customer_account=customer_account, owner=owner, department=department,
        limit=limit, scope=scope)
    clocks: dict[str, list[dict[str, Any]]] = {r.order_id: [] for r in cases}
    for row in open_clocks:
        clocks[row.order_id].append(clock_view(row, now, rt.calendar))
    return [{**order_out(r), "clocks": clocks[r.order_id]} for r in cases]
