"""The stored configuration (SLA policy versions, calendar years) and the open-case views
over REST: SQLAlchemy Core, off the call's path."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from services.workorder import db
from services.workorder.domain import orders as od
from services.workorder.repository import readable_orders
from shared.data_scope import DataScope
from shared.db import Session
from shared.messaging import Transaction

# Serializes policy changes so that each gets the next version number.
POLICY_VERSION_LOCK = 4_004_001


async def policies(session: Session, *, latest: bool) -> list[dict[str, Any]]:
    """Stored versions, newest first (only the newest if ``latest``)."""
    t = db.sla_policies
    query = select(t).order_by(t.c.version.desc())
    if latest:
        query = query.limit(1)
    return [r._asdict() for r in (await session.execute(query)).all()]


async def insert_first_policy(tx: Transaction, document: dict[str, Any]) -> None:
    """Version 1, unless there is one (concurrent replicas: the first one's wins)."""
    await tx.session.execute(insert(db.sla_policies).values(
        version=1, document=document, created_by="file", created_at=tx.now,
    ).on_conflict_do_nothing())


async def lock_next_policy_version(tx: Transaction) -> int:
    """The version a new policy gets; held until the transaction ends."""
    t = db.sla_policies
    await tx.session.execute(select(func.pg_advisory_xact_lock(POLICY_VERSION_LOCK)))
    return int((await tx.session.execute(select(func.coalesce(func.max(t.c.version), 0))))
               .scalar_one()) + 1


async def insert_policy(tx: Transaction, version: int, document: dict[str, Any],
                        actor: str) -> None:
    await tx.session.execute(db.sla_policies.insert().values(
        version=version, document=document, created_by=actor, created_at=tx.now))


async def lock_cases_behind(tx: Transaction, version: int, limit: int) -> list[Any]:
    """Up to ``limit`` cases with open clocks on a version older than ``version``, locked;
    cases another worker holds are skipped."""
    o, c = db.orders, db.sla_clocks
    behind = select(c.c.order_id).where(c.c.state != "stopped", c.c.policy_version < version)
    return list((await tx.session.execute(
        select(o).where(o.c.order_id.in_(behind)).order_by(o.c.order_id).limit(limit)
        .with_for_update(skip_locked=True))).all())


async def save_calendar(tx: Transaction, year: int, document: dict[str, Any],
                        actor: str) -> None:
    statement = insert(db.calendars).values(year=year, document=document, updated_by=actor,
                                            updated_at=tx.now)
    await tx.session.execute(statement.on_conflict_do_update(
        index_elements=["year"], set_={"document": statement.excluded.document,
                                       "updated_by": statement.excluded.updated_by,
                                       "updated_at": statement.excluded.updated_at}))


async def open_cases(session: Session, *, customer_account: str | None, owner: str | None,
                     department: str | None, limit: int, scope: DataScope
                     ) -> tuple[list[Any], list[Any]]:
    """Open cases, oldest first, by any of the filters given, of those ``scope`` reads; and
    their open clocks."""
    o, c = db.orders, db.sla_clocks
    query = (select(o).where(o.c.state.notin_([s.value for s in od.TERMINAL_STATES]),
                             readable_orders(scope))
             .order_by(o.c.created_at, o.c.order_id).limit(limit))
    if customer_account is not None:
        query = query.where(o.c.customer_account == customer_account)
    if owner is not None:
        query = query.where(o.c.owner == owner)
    if department is not None:
        query = query.where(o.c.department == department)
    cases = list((await session.execute(query)).all())
    if not cases:
        return [], []
    clocks = (await session.execute(
        select(c).where(c.c.order_id.in_([r.order_id for r in cases]), c.c.state != "stopped")
        .order_by(c.c.clock_id))).all()
    return cases, list(clocks)
