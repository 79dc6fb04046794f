"""The IVR sessions this process runs, in memory and journaled in ``ivr.sessions``.

As in cti_gateway's repository: a session is read from the table once, kept while it runs,
and a unit of work writes every session it changed in one statement before its events, each
row's version checked (another process's change fails the unit, which is then redone from
the table). Sessions leave memory once they end.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from services.ivr_engine.db import SCHEMA
from services.ivr_engine.domain import SessionState
from shared.db import Queries
from shared.messaging import RedoUnit, Transaction

SELECT_ONE = f"SELECT state, version FROM {SCHEMA}.sessions WHERE call_id = $1"
WRITE = f"""
    INSERT INTO {SCHEMA}.sessions AS s (call_id, session_id, purpose, menu, menu_version,
        status, node, outcome, deadline, state, started_at, updated_at, ended_at, version)
    SELECT u.call_id, u.session_id, u.purpose, u.menu, u.menu_version, u.status, u.node,
           u.outcome, u.deadline, u.state::jsonb, u.started_at, u.updated_at, u.ended_at,
           u.version
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[],
                  $7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::timestamptz[],
                  $12::timestamptz[], $13::timestamptz[], $14::int[])
        AS u(call_id, session_id, purpose, menu, menu_version, status, node, outcome,
             deadline, state, started_at, updated_at, ended_at, version)
    ON CONFLICT (call_id) DO UPDATE SET status = EXCLUDED.status, node = EXCLUDED.node,
        outcome = EXCLUDED.outcome, deadline = EXCLUDED.deadline, state = EXCLUDED.state,
        updated_at = EXCLUDED.updated_at, ended_at = EXCLUDED.ended_at,
        version = EXCLUDED.version
    WHERE s.version = EXCLUDED.version - 1
    RETURNING s.call_id"""
DUE = (f"SELECT call_id FROM {SCHEMA}.sessions WHERE deadline <= $1"
       " ORDER BY deadline LIMIT $2")


class StaleSession(RedoUnit):
    """Another process changed a session since this one read it."""


class Sessions:
    def __init__(self, *, keep_ended: int = 5_000) -> None:
        self._sessions: dict[str, SessionState] = {}
        self._versions: dict[str, int] = {}
        # Sessions that ended lately, as they ended: the call's release (or a late digit)
        # usually comes after the session is over and needs no read to be ignored.
        self._ended: OrderedDict[str, SessionState] = OrderedDict()
        self._keep_ended = keep_ended

    def __len__(self) -> int:
        return len(self._sessions)

    async def get(self, tx: Transaction, call_id: str) -> SessionState | None:
        ended = self._ended.get(call_id)
        if ended is not None:
            return ended
        state = self._sessions.get(call_id)
        if state is None:
            record = await tx.fetchrow(SELECT_ONE, call_id)
            if record is None:
                return None
            raw = record["state"]
            state = SessionState.model_validate(json.loads(raw) if isinstance(raw, str)
                                                else raw)
            if state.running:
                self._sessions[call_id] = state
                self._versions[call_id] = record["version"]
            else:
                return state  # ended: nothing will change it; not worth keeping
        self._touched(tx).add(call_id)
        return state

    def add(self, tx: Transaction, state: SessionState) -> None:
        """A new session: written with the unit of work (it fails if the call has one)."""
        self._sessions[state.call_id] = state
        self._versions[state.call_id] = 0
        self._touched(tx).add(state.call_id)
        self.save(tx, state)

    def save(self, tx: Transaction, state: SessionState) -> None:
        dirty: dict[str, tuple[SessionState, datetime]] = tx.shared.setdefault("ivr.dirty", {})
        dirty[state.call_id] = (state, tx.now)
        tx.stage("ivr.sessions", lambda conn: self._write(tx, conn),
                 committed=lambda: self._committed(tx), rolled_back=lambda: self._forget(tx))
        tx.on_rollback(lambda: tx.shared.__setitem__("ivr.poisoned", True))

    async def due(self, tx: Transaction, now: datetime, limit: int = 200) -> list[str]:
        return [r["call_id"] for r in await tx.fetch(DUE, now, limit)]

    def _touched(self, tx: Transaction) -> set[str]:
        touched: set[str] = tx.shared.setdefault("ivr.touched", set())
        return touched

    async def _write(self, tx: Transaction, conn: Queries) -> None:
        if tx.shared.get("ivr.poisoned"):
            raise StaleSession("a handler failed after changing a session: redo the batch")
        dirty: dict[str, tuple[SessionState, datetime]] = tx.shared.get("ivr.dirty", {})
        if not dirty:
            return
        columns: list[list[Any]] = [[] for _ in range(14)]
        for call_id, (state, now) in dirty.items():
            row = (call_id, state.session_id, state.purpose, state.menu, state.menu_version,
                   state.status, state.node, state.outcome, state.deadline,
                   state.model_dump_json(), state.started_at, now, state.ended_at,
                   self._versions.get(call_id, 0) + 1)
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        written = await conn.fetch(WRITE, *columns)
        if len(written) != len(dirty):
            stale = sorted(set(dirty) - {r["call_id"] for r in written})
            raise StaleSession(f"sessions changed by another process: {', '.join(stale[:5])}")

    def _committed(self, tx: Transaction) -> None:
        for call_id, (state, _) in tx.shared.get("ivr.dirty", {}).items():
            if state.running:
                self._sessions[call_id] = state
                self._versions[call_id] = self._versions.get(call_id, 0) + 1
            else:
                self._sessions.pop(call_id, None)
                self._versions.pop(call_id, None)
                self._ended[call_id] = state
                while len(self._ended) > self._keep_ended:
                    self._ended.popitem(last=False)

    def _forget(self, tx: Transaction) -> None:
        self.evict(tx.shared.get("ivr.touched", ()))

    def evict(self, call_ids: Iterable[str]) -> None:
        for call_id in list(call_ids):
            self._sessions.pop(call_id, None)
            self._versions.pop(call_id, None)
            self._ended.pop(call_id, None)
