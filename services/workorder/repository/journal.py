"""The audit trail of a unit of work (order history and clock history rows), kept until the
unit ends and written in one statement per table, whatever the number of handlers and steps
that recorded them. Nothing reads these tables inside the unit that writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.workorder import db
from shared.db import Queries
from shared.messaging import Transaction

KEY = "workorder.journal"

WRITE_ORDER_HISTORY = f"""
    INSERT INTO {db.SCHEMA}.order_history (order_id, action, from_state, to_state, actor,
                                          reason, at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::timestamptz[])"""

WRITE_CLOCK_HISTORY = f"""
    INSERT INTO {db.SCHEMA}.clock_history (clock_id, order_id, name, event, actor, reason,
                                          budget_seconds, elapsed_seconds, priority,
                                          policy_version, level, due_at, at)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::float8[], $8::float8[], $9::text[], $10::int[],
                         $11::int[], $12::timestamptz[], $13::timestamptz[])"""


class _Journal:
    def __init__(self) -> None:
        self.orders: list[tuple[Any, ...]] = []
        self.clocks: list[tuple[Any, ...]] = []

    async def write(self, conn: Queries) -> None:
        # Rows keep the order they were recorded in (the tables' ids order each trail).
        if self.orders:
            await conn.execute(WRITE_ORDER_HISTORY, *map(list, zip(*self.orders, strict=True)))
        if self.clocks:
            await conn.execute(WRITE_CLOCK_HISTORY, *map(list, zip(*self.clocks, strict=True)))
        self.orders, self.clocks = [], []


def _journal(tx: Transaction) -> _Journal:
    journal: _Journal | None = tx.shared.get(KEY)
    if journal is None:
        journal = tx.shared[KEY] = _Journal()
        tx.stage(KEY, journal.write)
    return journal


def order_step(tx: Transaction, order_id: str, action: str, from_state: str | None,
               to_state: str, actor: str, reason: str | None, at: datetime) -> None:
    _journal(tx).orders.append((order_id, action, from_state, to_state, actor, reason, at))


def clock_event(tx: Transaction, *, clock_id: int, order_id: str, name: str, event: str,
                actor: str, reason: str | None, budget: float, elapsed: float, priority: str,
                version: int, level: int, due_at: datetime | None, at: datetime) -> None:
    _journal(tx).clocks.append((clock_id, order_id, name, event, actor, reason, budget, elapsed,
                                priority, version, level, due_at, at))
