"""The calls this process handles, in memory and journaled in ``cti.calls`` (DESIGN §5).

A call is read from the table once (the first time this process sees it, or after a
restart) and then kept: a switch frame, an event or a REST command about it finds it here,
and one that changes nothing costs no database work at all. A unit of work saves the calls
it changed in one statement, just before its events, with each row's version checked: a row
another process changed since we read it fails the unit (:class:`StaleCall`), whose work is
then redone from the table. Released calls leave memory once committed.

SQL written once (asyncpg prepares and caches it per connection).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from services.cti_gateway.db import SCHEMA
from services.cti_gateway.domain import Call, CallState, LegState
from shared.db import Queries
from shared.messaging import RedoUnit, Transaction

# Column name -> the array type its values travel as in the batched write.
COLUMNS: dict[str, str] = {
    "call_id": "text", "direction": "text", "state": "text", "from_number": "text",
    "to_number": "text", "switch_id": "text", "party_leg": "text", "agent_leg": "text",
    "agent_id": "text", "agent_device": "text", "team": "text", "department": "text",
    "reservation_id": "text", "queue": "text",
    "context": "text", "last_prompt_id": "text", "request_id": "text",
    "party_invite_cseq": "int", "agent_invite_cseq": "int", "ring_deadline": "timestamptz",
    "offered_at": "timestamptz", "answered_at": "timestamptz", "connected_at": "timestamptz",
    "released_at": "timestamptz", "cause": "text", "version": "int",
}
_NAMES = list(COLUMNS)
_FIELDS = [name for name in _NAMES if name != "version"]

SELECT_ONE = (f"SELECT {', '.join(_NAMES)} FROM {SCHEMA}.calls WHERE call_id = $1")
_values = ", ".join(f"u.{n}::jsonb" if n == "context" else f"u.{n}" for n in _NAMES)
_arrays = ", ".join(f"${i + 1}::{COLUMNS[n]}[]" for i, n in enumerate(_NAMES))
_updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in _NAMES if n != "call_id")
# Every changed call of a unit of work in one round trip; a row whose stored version is not
# the one we read is left alone and missing from RETURNING.
WRITE = (f"INSERT INTO {SCHEMA}.calls AS c ({', '.join(_NAMES)}, updated_at)"
         f" SELECT {_values}, now() FROM unnest({_arrays}) AS u({', '.join(_NAMES)})"
         f" ON CONFLICT (call_id) DO UPDATE SET {_updates}, updated_at = now()"
         f" WHERE c.version = EXCLUDED.version - 1 RETURNING c.call_id")
EXISTS_REQUEST = f"SELECT 1 FROM {SCHEMA}.calls WHERE request_id = $1"
DUE_RINGS = (f"SELECT call_id FROM {SCHEMA}.calls WHERE ring_deadline <= $1"
             " AND state = ANY($2::text[]) ORDER BY ring_deadline LIMIT $3")
LIVE_ON_SWITCH = (f"SELECT call_id FROM {SCHEMA}.calls WHERE switch_id = $1"
                  " AND state <> 'released'")

# A switch's live calls over all its connections (ids start with the switch's prefix).
LIVE_OF_SWITCH = (f"SELECT call_id, switch_id FROM {SCHEMA}.calls"
                  " WHERE starts_with(switch_id, $1) AND state <> 'released'")

RINGING_STATES = [CallState.ALERTING.value, CallState.DIALING.value]


class StaleCall(RedoUnit):
    """Another process changed a call since this one read it: redo the work from the table."""


def _from_record(record: asyncpg.Record) -> Call:
    values = {name: record[name] for name in _FIELDS}
    values["state"] = CallState(values["state"])
    values["party_leg"] = LegState(values["party_leg"])
    values["agent_leg"] = LegState(values["agent_leg"])
    context = values["context"]
    values["context"] = dict(json.loads(context) if isinstance(context, str) else context or {})
    return Call(**values)


def _columns(calls: list[tuple[Call, int]]) -> list[list[Any]]:
    out: list[list[Any]] = [[] for _ in _NAMES]
    for call, version in calls:
        for index, name in enumerate(_FIELDS):
            value = getattr(call, name)
            if name == "context":
                value = json.dumps(value, ensure_ascii=False, default=str)
            elif name in ("state", "party_leg", "agent_leg"):
                value = value.value
            out[index].append(value)
        out[-1].append(version)
    return out


class Calls:
    """The identity map of the calls this process handles."""

    def __init__(self, *, keep_released: int = 2_000) -> None:
        self._calls: dict[str, Call] = {}
        self._versions: dict[str, int] = {}
        # Released calls stay a little while: late frames about them (an ACK after the BYE,
        # the switch's 200 to our own BYE) still find them without a read.
        self._released: OrderedDict[str, None] = OrderedDict()
        self._keep_released = keep_released

    def __len__(self) -> int:
        return len(self._calls)

    async def get(self, tx: Transaction, call_id: str) -> Call | None:
        call = self._calls.get(call_id)
        if call is None:
            record = await tx.fetchrow(SELECT_ONE, call_id)
            if record is None:
                return None
            call = _from_record(record)
            self._calls[call_id] = call
            self._versions[call_id] = record["version"]
            if not call.live:
                self._remember_released(call_id)
        self._touched(tx).add(call_id)
        return call

    def add(self, tx: Transaction, call: Call) -> None:
        """A new call: written with the unit of work (it fails if the id exists)."""
        self._calls[call.call_id] = call
        self._versions[call.call_id] = 0
        self._touched(tx).add(call.call_id)
        self.save(tx, call)

    def save(self, tx: Transaction, call: Call) -> None:
        dirty: dict[str, Call] = tx.shared.setdefault("cti.dirty", {})
        dirty[call.call_id] = call
        tx.stage("cti.calls", lambda conn: self._write(tx, conn),
                 committed=lambda: self._committed(tx), rolled_back=lambda: self._forget(tx))
        tx.on_rollback(lambda: self._item_failed(tx, call.call_id))

    async def exists_request(self, tx: Transaction, request_id: str) -> bool:
        return await tx.fetchval(EXISTS_REQUEST, request_id) is not None

    async def due_rings(self, tx: Transaction, now: datetime, limit: int = 200) -> list[str]:
        return [r["call_id"] for r in await tx.fetch(DUE_RINGS, now, RINGING_STATES, limit)]

    async def live_on_switch(self, tx: Transaction, switch_id: str) -> list[str]:
        return [r["call_id"] for r in await tx.fetch(LIVE_ON_SWITCH, switch_id)]

    async def live_of_switch(self, tx: Transaction, prefix: str) -> list[tuple[str, str]]:
        """(call id, connection id) of every live call of the switch whose connection ids
        start with ``prefix``."""
        return [(r["call_id"], r["switch_id"]) for r in await tx.fetch(LIVE_OF_SWITCH, prefix)]

    # -- the unit of work's end --------------------------------------------------------------

    def _touched(self, tx: Transaction) -> set[str]:
        touched: set[str] = tx.shared.setdefault("cti.touched", set())
        return touched

    async def _write(self, tx: Transaction, conn: Queries) -> None:
        if tx.shared.get("cti.poisoned"):
            raise StaleCall("a handler failed after changing a call: redo the batch")
        dirty: dict[str, Call] = tx.shared.get("cti.dirty", {})
        if not dirty:
            return
        rows = [(call, self._versions.get(call_id, 0) + 1) for call_id, call in dirty.items()]
        written = await conn.fetch(WRITE, *_columns(rows))
        if len(written) != len(rows):
            stale = sorted(set(dirty) - {r["call_id"] for r in written})
            raise StaleCall(f"calls changed by another process: {', '.join(stale[:5])}")

    def _committed(self, tx: Transaction) -> None:
        for call_id, call in tx.shared.get("cti.dirty", {}).items():
            self._calls[call_id] = call
            self._versions[call_id] = self._versions.get(call_id, 0) + 1
            if not call.live:
                self._remember_released(call_id)

    def _forget(self, tx: Transaction) -> None:
        """The unit of work rolled back: what it touched is read again next time."""
        self.evict(tx.shared.get("cti.touched", ()))

    def _item_failed(self, tx: Transaction, call_id: str) -> None:
        # One handler failed after saving a call that others in the batch may also have
        # changed: the batch is redone one by one.
        tx.shared["cti.poisoned"] = True

    def evict(self, call_ids: Iterable[str]) -> None:
        for call_id in list(call_ids):
            self._calls.pop(call_id, None)
            self._versions.pop(call_id, None)
            self._released.pop(call_id, None)

    def _remember_released(self, call_id: str) -> None:
        self._released[call_id] = None
        self._released.move_to_end(call_id)
        while len(self._released) > self._keep_released:
            old, _ = self._released.popitem(last=False)
            self._calls.pop(old, None)
            self._versions.pop(old, None)
