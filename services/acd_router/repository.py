"""The floor as the active router holds it: every agent and every live queue entry in
memory, and the unit of work's writes staged until it ends.

The router is the single writer of the ``acd`` tables (the lease): what it holds is what the
tables hold once its last unit committed, so reads are served from here, and a unit writes
the agents and entries it changed, and the history rows it added, in a few statements just
before its events. Anything that would make the mirror doubtful (a unit rolled back, the
tables changed by another process: the generation check) rebuilds it from the tables
(``Acd._rebuild``), which also fills it. Ended entries stay a little while (late events about
them); older ones are read from the table when asked for.

Also the rows other modules would otherwise query themselves: the leader lease (``lease.py``
decides with them, under the routing lock) and the history a statistics range reads
(``stats.py``, SQLAlchemy Core on a read's session). SQL is built here and in ``db.py`` only.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Queries
from shared.messaging import Transaction

from . import store
from .db import agent_state_changes, queue_entries, routing_decisions
from .domain import Agent, AgentState, EntryState, QueueEntry
from .domain.stats import CallRow, Range, ReservationRow, StateRow, posix

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


# -- the leader lease (lease.py) -------------------------------------------------------------

# ``expired`` is judged by PostgreSQL's clock, so the processes' clocks never have to agree.
READ_LEASE = ("SELECT holder, url, epoch, expires_at, expires_at < clock_timestamp() AS expired"
              " FROM acd.leader_lease WHERE id = 1")


@dataclass
class LeaseRow:
    holder: str
    url: str | None
    epoch: int
    expires_at: datetime
    expired: bool


def lease_row(found: Any) -> LeaseRow | None:
    """READ_LEASE's row, from a SQLAlchemy mapping or an asyncpg record alike."""
    if found is None:
        return None
    return LeaseRow(found["holder"], found["url"], int(found["epoch"]), found["expires_at"],
                    bool(found["expired"]))


async def read_lease(session: AsyncSession) -> LeaseRow | None:
    return lease_row((await session.execute(text(READ_LEASE))).mappings().first())


# A routing transaction opens in two round trips: the routing lock (with the lease's idle
# timeout where there is a lease), then, in a statement of its own so that it sees what the
# lock's previous holder committed, the generation bump and the lease as it now stands.
LOCK_ROUTING = "SELECT pg_advisory_xact_lock($1)"
LOCK_ROUTING_LEASED = ("SELECT pg_advisory_xact_lock($1),"
                       " set_config('idle_in_transaction_session_timeout', $2, true)")
BUMP_GENERATION = (
    "WITH bumped AS (UPDATE acd.engine_state SET generation = generation + 1 WHERE id = 1"
    " RETURNING generation)"
    " SELECT b.generation, l.holder, l.url, l.epoch, l.expires_at,"
    " l.expires_at < clock_timestamp() AS expired"
    " FROM bumped b LEFT JOIN acd.leader_lease l ON l.id = 1")


async def open_routing(tx: Queries, lock: int, idle_timeout_ms: int | None
                       ) -> tuple[int, LeaseRow | None]:
    """Take the routing lock and bump the routing state's generation: (the new generation,
    the lease under the lock). ``idle_timeout_ms``: end the session if the transaction
    idles that long (a paused holder must not block a takeover)."""
    if idle_timeout_ms is None:
        await tx.execute(LOCK_ROUTING, lock)
    else:
        await tx.execute(LOCK_ROUTING_LEASED, lock, str(idle_timeout_ms))
    found = await tx.fetchrow(BUMP_GENERATION)
    return int(found["generation"]), lease_row(found) if found["holder"] is not None else None


async def acquire_lease(session: AsyncSession, instance: str, url: str, lease_seconds: float,
                        routing_lock: int) -> tuple[int | None, str | None]:
    """Take the lease unless another instance holds it unexpired: (the new epoch, or None if
    not taken; the holder found). Runs in the caller's transaction, which must commit at once
    to release the routing lock."""
    # The routing lock orders the epoch bump against every routing transaction (fence); the
    # timeout keeps a stuck ex-holder from blocking the caller's loop.
    await session.execute(text("SET LOCAL lock_timeout = '2s'"))
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": routing_lock})
    found = (await session.execute(text(
        "SELECT holder, epoch, expires_at < clock_timestamp() AS expired"
        " FROM acd.leader_lease WHERE id = 1 FOR UPDATE"))).first()
    previous = found.holder if found is not None else None
    if found is not None and not found.expired and found.holder != instance:
        return None, previous
    epoch = (await session.execute(text(
        "INSERT INTO acd.leader_lease AS l"
        " (id, holder, url, epoch, acquired_at, renewed_at, expires_at)"
        " VALUES (1, :me, :url, 1, clock_timestamp(), clock_timestamp(),"
        "         clock_timestamp() + make_interval(secs => :lease))"
        " ON CONFLICT (id) DO UPDATE SET holder = :me, url = :url,"
        "   epoch = l.epoch + 1, acquired_at = clock_timestamp(),"
        "   renewed_at = clock_timestamp(),"
        "   expires_at = clock_timestamp() + make_interval(secs => :lease)"
        " RETURNING epoch"),
        {"me": instance, "url": url, "lease": lease_seconds})).scalar_one()
    return int(epoch), previous


async def renew_lease(session: AsyncSession, instance: str, epoch: int | None,
                      lease_seconds: float) -> bool:
    """Extend the lease; False if it is no longer this instance's at this epoch."""
    renewed = (await session.execute(text(
        "UPDATE acd.leader_lease SET renewed_at = clock_timestamp(),"
        " expires_at = clock_timestamp() + make_interval(secs => :lease)"
        " WHERE id = 1 AND holder = :me AND epoch = :epoch RETURNING id"),
        {"lease": lease_seconds, "me": instance, "epoch": epoch})).first()
    return renewed is not None


async def expire_lease(session: AsyncSession, instance: str, epoch: int) -> None:
    """Expire the lease now (a clean shutdown), if it is still this instance's at ``epoch``,
    so the standby need not wait it out."""
    await session.execute(text(
        "UPDATE acd.leader_lease SET expires_at = clock_timestamp()"
        " WHERE id = 1 AND holder = :me AND epoch = :epoch"),
        {"me": instance, "epoch": epoch})


# -- a statistics range's history (stats.py) -------------------------------------------------

async def stats_rows(session: AsyncSession, span: Range
                     ) -> tuple[list[CallRow], list[ReservationRow], list[StateRow]]:
    """What ``domain.stats`` needs for ``span``: the calls that may have left the queue in it
    (or still wait), the reservations decided or ended in it, and the agents' state changes
    in it with each agent's state at its start."""
    start = datetime.fromtimestamp(span.start, UTC)
    end = datetime.fromtimestamp(span.end, UTC)
    q = queue_entries.c
    calls = [CallRow(call_id=r.call_id, queue=r.queue, state=r.state,
                     enqueued_at=r.enqueued_at.timestamp(), agent_id=r.agent_id,
                     answered_at=posix(r.answered_at), ended_at=posix(r.ended_at),
                     wrapup_ended_at=posix(r.wrapup_ended_at))
             for r in await session.execute(
                 select(queue_entries).where(
                     q.enqueued_at < end,
                     or_(q.answered_at >= start, q.ended_at >= start,
                         and_(q.answered_at.is_(None), q.ended_at.is_(None)))))]
    d = routing_decisions.c
    reservations = [ReservationRow(agent_id=r.agent_id, queue=r.queue,
                                   decided_at=r.decided_at.timestamp(), outcome=r.outcome,
                                   outcome_reason=r.outcome_reason,
                                   outcome_at=posix(r.outcome_at))
                    for r in await session.execute(
                        select(routing_decisions).where(
                            d.kind == "reserved",
                            or_(and_(d.decided_at >= start, d.decided_at < end),
                                and_(d.outcome_at >= start, d.outcome_at < end))))]
    c = agent_state_changes.c
    # Each agent's state at the start (its last change before it), then the changes inside.
    last_before = (select(agent_state_changes).where(c.at < start)
                   .distinct(c.agent_id).order_by(c.agent_id, c.at.desc(), c.id.desc()))
    inside = select(agent_state_changes).where(c.at >= start, c.at < end)
    changes = [StateRow(agent_id=r.agent_id, at=r.at.timestamp(), previous=r.previous,
                        state=r.state)
               for query in (last_before, inside) for r in await session.execute(query)]
    return calls, reservations, changes
