"""The floor as the active router holds it: every agent and every live queue entry in
memory, and the unit of work's writes staged until it ends.

The router is the single writer of the ``acd`` tables (the lease): what it holds is what the
tables hold once its last unit committed, so reads are served from here, and a unit writes
the agents and entries it changed, and the history rows it added, in a few statements just
before its events. Anything that would make the mirror doubtful (a unit rolled back, the
tables changed by another process: the generation check) rebuilds it from the tables
(``Acd._rebuild``), which also fills it. Ended entries stay a little while (late events about
them); older ones are read from the table when asked for.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any

from shared.db import Queries
from shared.messaging import Transaction

from . import store
from .domain import Agent, AgentState, EntryState, QueueEntry

ENDED_KEPT = 5_000


class Floor:
    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.entries: dict[str, QueueEntry] = {}
        # Agent-first dial call id -> the held caller's call id (virtual hold).
        self._by_dial: dict[str, str] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        # Calls released before they were queued (a late ivr.session.completed must not
        # queue them); the recent ones, rebuilt from the table.
        self.released: OrderedDict[str, None] = OrderedDict()

    def reset(self, agents: list[Agent], entries: list[QueueEntry],
              released: list[str]) -> None:
        self.agents = {agent.agent_id: agent for agent in agents}
        self.entries = {}
        self._by_dial = {}
        self._ended = OrderedDict()
        for entry in entries:
            self._keep(entry)
        self.released = OrderedDict((call_id, None) for call_id in released)

    # -- reads -------------------------------------------------------------------------------

    def agent(self, agent_id: str) -> Agent | None:
        return self.agents.get(agent_id)

    async def entry(self, tx: Transaction, call_id: str) -> QueueEntry | None:
        found = self.entries.get(call_id)
        if found is None:
            found = await store.load_entry(tx, call_id)  # long ended, or never queued
            if found is not None:
                self._keep(found)
        return found

    async def entry_for_call(self, tx: Transaction, call_id: str) -> QueueEntry | None:
        """The routed call itself, or (virtual hold) the agent-first dial calling it back."""
        held = self._by_dial.get(call_id)
        if held is not None:
            return self.entries.get(held)
        found = self.entries.get(call_id)
        if found is None:
            found = await store.entry_for_call(tx, call_id)
            if found is not None:
                self._keep(found)
        return found

    def live_entries(self) -> list[QueueEntry]:
        return sorted((e for e in self.entries.values()
                       if e.state in (EntryState.WAITING, EntryState.RESERVED)),
                      key=QueueEntry.routing_order)

    def reservations_due(self, now: datetime) -> list[QueueEntry]:
        due = [e for e in self.entries.values() if e.reservation_due(now)]
        return sorted(due, key=lambda e: (e.reservation_expires_at, e.call_id))

    def wrap_ups_due(self, now: datetime) -> list[Agent]:
        due = [a for a in self.agents.values() if a.wrap_up_due(now)]
        return sorted(due, key=lambda a: (a.wrapup_deadline, a.agent_id))

    def auto_readies_due(self, now: datetime) -> list[Agent]:
        due = [a for a in self.agents.values() if a.auto_ready_due(now)]
        return sorted(due, key=lambda a: (a.auto_ready_at, a.agent_id))

    def next_deadline(self) -> datetime | None:
        moments = [e.reservation_expires_at for e in self.entries.values()
                   if e.state is EntryState.RESERVED and e.reservation_expires_at]
        moments += [a.wrapup_deadline for a in self.agents.values()
                    if a.state is AgentState.WRAP_UP and a.wrapup_deadline]
        moments += [a.auto_ready_at for a in self.agents.values()
                    if a.state is AgentState.NOT_READY and a.auto_ready_at]
        return min(moments) if moments else None

    # -- writes (staged until the unit of work ends) -----------------------------------------

    def save_agent(self, tx: Transaction, agent: Agent) -> None:
        self.agents[agent.agent_id] = agent
        self._dirty(tx)["agents"][agent.agent_id] = agent

    def save_entry(self, tx: Transaction, entry: QueueEntry) -> None:
        self._keep(entry)
        self._dirty(tx)["entries"][entry.call_id] = entry

    def record(self, tx: Transaction, sql: str, *args: Any) -> None:
        """A history row (a state change, a decision and how it ended ...), written in turn
        with the unit's others."""
        rows: list[tuple[str, tuple[Any, ...]]] = self._dirty(tx)["rows"]
        rows.append((sql, args))

    def record_decision(self, tx: Transaction, entry: QueueEntry, strategy: str,
                        now: datetime, *, step: int | None = None,
                        explanation: dict[str, Any] | None = None) -> None:
        assert entry.reservation_id and entry.agent_id and entry.reservation_expires_at
        self.record(tx, store.RECORD_DECISION, entry.reservation_id, entry.call_id,
                    entry.agent_id, entry.queue, strategy[:32], now,
                    entry.reservation_expires_at, step, store.json_text(explanation))

    def record_outcome(self, tx: Transaction, *, decision_id: str, call_id: str, queue: str,
                       kind: str, rule: str, step: int, reason: str | None,
                       explanation: dict[str, Any], now: datetime) -> None:
        """A decision without an agent (overflow, callback, release): final when made."""
        self.record(tx, store.RECORD_OUTCOME, decision_id, call_id, queue, rule[:32], now,
                    kind, reason, step, store.json_text(explanation))

    def close_decision(self, tx: Transaction, reservation_id: str | None, outcome: str,
                       now: datetime, reason: str | None = None) -> None:
        if reservation_id is not None:
            self.record(tx, store.CLOSE_DECISION, reservation_id, outcome, reason, now)

    def record_state_change(self, tx: Transaction, *, agent_id: str, at: datetime,
                            previous: str, state: str, reason: str | None,
                            call_id: str | None) -> None:
        self.record(tx, store.RECORD_STATE_CHANGE, agent_id, at, previous, state, reason,
                    call_id)

    def remember_released(self, tx: Transaction, call_id: str, now: datetime) -> None:
        self.released[call_id] = None
        while len(self.released) > ENDED_KEPT:
            self.released.popitem(last=False)
        self.record(tx, store.REMEMBER_RELEASED, call_id, now)

    async def flush(self, tx: Transaction) -> None:
        """Write what the unit staged so far (before reading the tables back in it)."""
        dirty = tx.shared.get("acd.floor")
        if dirty is not None:
            await self._write(dirty, tx)

    def _dirty(self, tx: Transaction) -> dict[str, Any]:
        dirty: dict[str, Any] | None = tx.shared.get("acd.floor")
        if dirty is None:
            dirty = tx.shared["acd.floor"] = {"agents": {}, "entries": {}, "rows": []}
            tx.stage("acd.floor", lambda conn: self._write(dirty, conn))
        return dirty

    async def _write(self, dirty: dict[str, Any], conn: Queries) -> None:
        agents, entries, rows = dirty["agents"], dirty["entries"], dirty["rows"]
        if entries:
            await conn.executemany(store.SAVE_ENTRY, [store.entry_args(e)
                                                      for e in entries.values()])
        if agents:
            await conn.executemany(store.SAVE_AGENT, [store.agent_args(a)
                                                      for a in agents.values()])
        # In order, each run of one statement in one round trip.
        start = 0
        while start < len(rows):
            sql = rows[start][0]
            end = start
            while end < len(rows) and rows[end][0] == sql:
                end += 1
            await conn.executemany(sql, [args for _, args in rows[start:end]])
            start = end
        dirty["agents"], dirty["entries"], dirty["rows"] = {}, {}, []

    def _keep(self, entry: QueueEntry) -> None:
        self.entries[entry.call_id] = entry
        if entry.callback_call_id:
            self._by_dial[entry.callback_call_id] = entry.call_id
        if entry.state in (EntryState.WAITING, EntryState.RESERVED):
            self._ended.pop(entry.call_id, None)
            return
        self._ended[entry.call_id] = None
        self._ended.move_to_end(entry.call_id)
        while len(self._ended) > ENDED_KEPT:
            old, _ = self._ended.popitem(last=False)
            gone = self.entries.pop(old, None)
            if gone is not None and gone.callback_call_id:
                self._by_dial.pop(gone.callback_call_id, None)
