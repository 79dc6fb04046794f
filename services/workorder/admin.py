"""Configuration (SLA policy versions, calendars) and the views over open cases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.workorder import db
from services.workorder.clocks import KNOWN_TYPES, Runtime, clock_view, rebudget_clocks
from services.workorder.domain import orders as od
from services.workorder.domain import sla
from services.workorder.domain.calendar import parse_year
from services.workorder.repository import order_out
from shared.errors import NotFound
from shared.messaging import Transaction
from shared.service import Service


async def policies(session: AsyncSession, *, latest: bool) -> list[dict[str, Any]]:
    t = db.sla_policies
    query = select(t).order_by(t.c.version.desc())
    if latest:
        query = query.limit(1)
    rows = (await session.execute(query)).all()
    if not rows:
        raise NotFound("sla policy", "latest")
    return [r._asdict() for r in rows]


async def first_policy(tx: Transaction, document: dict[str, Any]) -> None:
    """Version 1 from the policy file, unless there is one. Concurrent replicas: the first
    one's version 1 wins, the others' inserts do nothing."""
    await tx.session.execute(insert(db.sla_policies).values(
        version=1, document=document, created_by="file", created_at=tx.now,
    ).on_conflict_do_nothing())


async def new_policy(tx: Transaction, document: dict[str, Any], actor: str) -> int:
    """Store a new version (validated). Open cases move to it afterwards, in batches
    (:func:`replan_batch`), so a policy change never holds every open case at once."""
    t = db.sla_policies
    # Serializes concurrent policy changes: each gets the next version number.
    await tx.session.execute(select(func.pg_advisory_xact_lock(4_004_001)))
    version = int((await tx.session.execute(select(func.coalesce(func.max(t.c.version), 0))))
                  .scalar_one()) + 1
    sla.parse_policy(document, version, KNOWN_TYPES)
    await tx.session.execute(t.insert().values(version=version, document=document,
                                               created_by=actor, created_at=tx.now))
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
    o, c = db.orders, db.sla_clocks
    behind = select(c.c.order_id).where(c.c.state != "stopped",
                                        c.c.policy_version < policy.version)
    orders = (await tx.session.execute(
        select(o).where(o.c.order_id.in_(behind)).order_by(o.c.order_id).limit(limit)
        .with_for_update(skip_locked=True))).all()
    for order in orders:
        await rebudget_clocks(tx, rt, order, order.priority, actor=actor,
                              reason=f"policy version {policy.version}", policy=policy)
    return len(orders)


def calendar_year(rt: Runtime, year: int) -> dict[str, Any]:
    schedule = rt.calendar.years.get(year)
    if schedule is None:
        raise NotFound("calendar", str(year))
    return schedule.document()


async def put_calendar(tx: Transaction, rt: Runtime, year: int, document: dict[str, Any],
                       actor: str) -> None:
    document = {**document, "year": document.get("year") or year}
    schedule = parse_year(document, year)
    statement = insert(db.calendars).values(year=year, document=schedule.document(),
                                            updated_by=actor, updated_at=tx.now)
    await tx.session.execute(statement.on_conflict_do_update(
        index_elements=["year"], set_={"document": statement.excluded.document,
                                       "updated_by": statement.excluded.updated_by,
                                       "updated_at": statement.excluded.updated_at}))

    async def swap() -> None:
        # Deadlines already planned keep their times; new plans use the new year.
        rt.calendar = rt.calendar.with_year(schedule)

    tx.after_commit(swap)


async def open_cases(session: AsyncSession, rt: Runtime, now: datetime, *,
                     customer_account: str | None, owner: str | None, department: str | None,
                     limit: int) -> list[dict[str, Any]]:
    o, c = db.orders, db.sla_clocks
    query = (select(o).where(o.c.state.notin_([s.value for s in od.TERMINAL_STATES]))
             .order_by(o.c.created_at, o.c.order_id).limit(limit))
    if customer_account is not None:
        query = query.where(o.c.customer_account == customer_account)
    if owner is not None:
        query = query.where(o.c.owner == owner)
    if department is not None:
        query = query.where(o.c.department == department)
    rows = (await session.execute(query)).all()
    clocks: dict[str, list[dict[str, Any]]] = {r.order_id: [] for r in rows}
    if rows:
        for row in (await session.execute(
                select(c).where(c.c.order_id.in_(list(clocks)), c.c.state != "stopped")
                .order_by(c.c.clock_id))).all():
            clocks[row.order_id].append(clock_view(row, now, rt.calendar))
    return [{**order_out(r), "clocks": clocks[r.order_id]} for r in rows]
