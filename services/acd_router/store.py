"""Loading and saving domain objects over the ``acd`` tables, in SQL written once.

Every function takes what it runs on (:class:`shared.db.Queries`): the unit of work's
``Transaction`` for the handlers, a ``Reader`` for REST reads. asyncpg prepares each
statement once per connection; nothing is built or compiled per event. JSON columns travel
as text (encoded here) and come back decoded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from shared.db import Queries

from .db import SCHEMA
from .domain import Agent, AgentState, EntryState, Pending, QueueEntry
from .domain.queue import LIVE_STATES

S = SCHEMA


def json_text(value: Any) -> str | None:
    """A JSON column's value as it travels (the connection's codec takes text)."""
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# -- agents ------------------------------------------------------------------------------------

AGENT_COLUMNS = ("agent_id, state, reason, skills, device, team, state_since, ready_since,"
                 " calls_handled, handled_day, pending_state, pending_reason, call_id,"
                 " reservation_id, wrapup_deadline, wrapup_mandatory, wrapup_limit,"
                 " auto_ready_at, department")
LOAD_AGENT = f"SELECT {AGENT_COLUMNS} FROM {S}.agents WHERE agent_id = $1"
LOAD_AGENTS = f"SELECT {AGENT_COLUMNS} FROM {S}.agents ORDER BY agent_id"
LOAD_AGENTS_IN = (f"SELECT {AGENT_COLUMNS} FROM {S}.agents WHERE state = ANY($1::text[])"
                  " ORDER BY agent_id")
SAVE_AGENT = f"""
    INSERT INTO {S}.agents ({AGENT_COLUMNS})
    VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19)
    ON CONFLICT (agent_id) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason,
        skills = EXCLUDED.skills, device = EXCLUDED.device, team = EXCLUDED.team,
        state_since = EXCLUDED.state_since, ready_since = EXCLUDED.ready_since,
        calls_handled = EXCLUDED.calls_handled, handled_day = EXCLUDED.handled_day,
        pending_state = EXCLUDED.pending_state, pending_reason = EXCLUDED.pending_reason,
        call_id = EXCLUDED.call_id, reservation_id = EXCLUDED.reservation_id,
        wrapup_deadline = EXCLUDED.wrapup_deadline,
        wrapup_mandatory = EXCLUDED.wrapup_mandatory, wrapup_limit = EXCLUDED.wrapup_limit,
        auto_ready_at = EXCLUDED.auto_ready_at, department = EXCLUDED.department"""


def _agent(row: Any) -> Agent:
    pending = (Pending(AgentState(row["pending_state"]), row["pending_reason"])
               if row["pending_state"] else None)
    return Agent(
        agent_id=row["agent_id"], state=AgentState(row["state"]), reason=row["reason"],
        skills=dict(_decoded(row["skills"])), device=row["device"], team=row["team"],
        state_since=row["state_since"], ready_since=row["ready_since"],
        calls_handled=row["calls_handled"], handled_day=row["handled_day"], pending=pending,
        call_id=row["call_id"], reservation_id=row["reservation_id"],
        wrapup_deadline=row["wrapup_deadline"], wrapup_mandatory=row["wrapup_mandatory"],
        wrapup_limit=row["wrapup_limit"], auto_ready_at=row["auto_ready_at"],
        department=row["department"],
    )


async def load_agent(db: Queries, agent_id: str) -> Agent | None:
    row = await db.fetchrow(LOAD_AGENT, agent_id)
    return _agent(row) if row else None


async def load_agents(db: Queries, *, states: Iterable[AgentState] | None = None
                      ) -> list[Agent]:
    if states is None:
        rows = await db.fetch(LOAD_AGENTS)
    else:
        rows = await db.fetch(LOAD_AGENTS_IN, [s.value for s in states])
    return [_agent(row) for row in rows]


def agent_args(agent: Agent) -> tuple[Any, ...]:
    """SAVE_AGENT's arguments."""
    return (agent.agent_id, agent.state.value, agent.reason, json_text(agent.skills), agent.device,
            agent.team, agent.state_since, agent.ready_since, agent.calls_handled,
            agent.handled_day, agent.pending.state.value if agent.pending else None,
            agent.pending.reason if agent.pending else None, agent.call_id,
            agent.reservation_id, agent.wrapup_deadline, agent.wrapup_mandatory,
            agent.wrapup_limit, agent.auto_ready_at, agent.department)


# -- queues and entries -------------------------------------------------------------------------

ENSURE_QUEUES = (f"INSERT INTO {S}.queues (name, created_at)"
                 " SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING")
QUEUE_NAMES = f"SELECT name FROM {S}.queues ORDER BY name"
QUEUE_EXISTS = f"SELECT 1 FROM {S}.queues WHERE name = $1"
ENTRY_COLUMNS = ("call_id, queue, priority, state, skills, customer, from_number, enqueued_at,"
                 " agent_id, reservation_id, reservation_expires_at, answered_at, ended_at,"
                 " ring_failures, outcome_reason, callback_number, callback_call_id,"
                 " callback_dials")
LOAD_ENTRY = f"SELECT {ENTRY_COLUMNS} FROM {S}.queue_entries WHERE call_id = $1"
ENTRY_FOR_CALL = (f"SELECT {ENTRY_COLUMNS} FROM {S}.queue_entries"
                  " WHERE call_id = $1 OR callback_call_id = $1 LIMIT 1")
LIVE_ENTRIES = (f"SELECT {ENTRY_COLUMNS} FROM {S}.queue_entries WHERE state = ANY($1::text[])"
                " ORDER BY priority DESC, enqueued_at, call_id")
LIVE_ENTRIES_OF = (f"SELECT {ENTRY_COLUMNS} FROM {S}.queue_entries"
                   " WHERE state = ANY($1::text[]) AND queue = $2"
                   " ORDER BY priority DESC, enqueued_at, call_id")
SAVE_ENTRY = f"""
    INSERT INTO {S}.queue_entries ({ENTRY_COLUMNS})
    VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
            $17, $18)
    ON CONFLICT (call_id) DO UPDATE SET queue = EXCLUDED.queue, priority = EXCLUDED.priority,
        state = EXCLUDED.state, skills = EXCLUDED.skills, customer = EXCLUDED.customer,
        from_number = EXCLUDED.from_number, enqueued_at = EXCLUDED.enqueued_at,
        agent_id = EXCLUDED.agent_id, reservation_id = EXCLUDED.reservation_id,
        reservation_expires_at = EXCLUDED.reservation_expires_at,
        answered_at = EXCLUDED.answered_at, ended_at = EXCLUDED.ended_at,
        ring_failures = EXCLUDED.ring_failures, outcome_reason = EXCLUDED.outcome_reason,
        callback_number = EXCLUDED.callback_number,
        callback_call_id = EXCLUDED.callback_call_id, callback_dials = EXCLUDED.callback_dials"""


async def ensure_queues(db: Queries, names: Iterable[str], now: datetime) -> None:
    wanted = sorted(set(names))
    if wanted:
        await db.execute(ENSURE_QUEUES, wanted, now)


async def queue_names(db: Queries) -> list[str]:
    return [row["name"] for row in await db.fetch(QUEUE_NAMES)]


async def queue_exists(db: Queries, name: str) -> bool:
    return await db.fetchval(QUEUE_EXISTS, name) is not None


def _entry(row: Any) -> QueueEntry:
    return QueueEntry(
        call_id=row["call_id"], queue=row["queue"], enqueued_at=row["enqueued_at"],
        priority=row["priority"], state=EntryState(row["state"]),
        skills=list(_decoded(row["skills"])), customer=_decoded(row["customer"]),
        from_number=row["from_number"], agent_id=row["agent_id"],
        reservation_id=row["reservation_id"],
        reservation_expires_at=row["reservation_expires_at"], answered_at=row["answered_at"],
        ended_at=row["ended_at"], ring_failures=row["ring_failures"],
        outcome_reason=row["outcome_reason"], callback_number=row["callback_number"],
        callback_call_id=row["callback_call_id"], callback_dials=row["callback_dials"],
    )


async def load_entry(db: Queries, call_id: str) -> QueueEntry | None:
    row = await db.fetchrow(LOAD_ENTRY, call_id)
    return _entry(row) if row else None


async def entry_for_call(db: Queries, call_id: str) -> QueueEntry | None:
    """The entry a CTI event is about: the routed call itself, or (virtual hold) the
    agent-first dial that calls its customer back."""
    row = await db.fetchrow(ENTRY_FOR_CALL, call_id)
    return _entry(row) if row else None


async def live_entries(db: Queries, queue: str | None = None,
                       states: Iterable[EntryState] = LIVE_STATES) -> list[QueueEntry]:
    wanted = [s.value for s in states]
    if queue is None:
        rows = await db.fetch(LIVE_ENTRIES, wanted)
    else:
        rows = await db.fetch(LIVE_ENTRIES_OF, wanted, queue)
    return [_entry(row) for row in rows]


def entry_args(entry: QueueEntry) -> tuple[Any, ...]:
    """SAVE_ENTRY's arguments."""
    return (entry.call_id, entry.queue, entry.priority, entry.state.value, json_text(entry.skills),
            json_text(entry.customer), entry.from_number, entry.enqueued_at, entry.agent_id,
            entry.reservation_id, entry.reservation_expires_at, entry.answered_at,
            entry.ended_at, entry.ring_failures, entry.outcome_reason, entry.callback_number,
            entry.callback_call_id, entry.callback_dials)


# -- routing decisions --------------------------------------------------------------------------

RECENTLY_RELEASED = (f"SELECT call_id FROM {S}.released_calls ORDER BY released_at DESC"
                     " LIMIT $1")
RECORD_DECISION = f"""
    INSERT INTO {S}.routing_decisions (reservation_id, call_id, agent_id, queue, strategy,
        decided_at, expires_at, outcome, kind, step, explanation)
    VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 'reserved', $8, $9::jsonb)"""
RECORD_OUTCOME = f"""
    INSERT INTO {S}.routing_decisions (reservation_id, call_id, agent_id, queue, strategy,
        decided_at, expires_at, outcome, outcome_reason, outcome_at, kind, step, explanation)
    VALUES ($1, $2, NULL, $3, $4, $5, NULL, $6, $7, $5, $6, $8, $9::jsonb)"""
CLOSE_DECISION = (f"UPDATE {S}.routing_decisions SET outcome = $2, outcome_reason = $3,"
                  " outcome_at = $4 WHERE reservation_id = $1 AND outcome = 'pending'")
MARK_ALERTING = (f"UPDATE {S}.routing_decisions SET alerting_at = $2"
                 " WHERE reservation_id = $1 AND alerting_at IS NULL")
DECISIONS_OF = (f"SELECT * FROM {S}.routing_decisions WHERE call_id = $1 ORDER BY id")


async def decisions_of(db: Queries, call_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(DECISIONS_OF, call_id)
    return [{**dict(row), "explanation": _decoded(row["explanation"])} for row in rows]


# -- calls released before they were queued -----------------------------------------------------

REMEMBER_RELEASED = (f"INSERT INTO {S}.released_calls (call_id, released_at) VALUES ($1, $2)"
                     " ON CONFLICT DO NOTHING")


# -- routing configuration and the engine generation ---------------------------------------------

LATEST_CONFIG = f"SELECT * FROM {S}.routing_configs ORDER BY version DESC LIMIT 1"
CONFIG_VERSION = f"SELECT * FROM {S}.routing_configs WHERE version = $1"
CONFIG_VERSIONS = (f"SELECT version, source, created_by, created_at, warnings"
                   f" FROM {S}.routing_configs ORDER BY version")
SAVE_CONFIG = f"""
    INSERT INTO {S}.routing_configs (version, config, warnings, source, created_by, created_at)
    SELECT coalesce(max(version), 0) + 1, $1::jsonb, $2::jsonb, $3, $4, $5
      FROM {S}.routing_configs RETURNING version"""


def _config_row(row: Any) -> dict[str, Any]:
    found = dict(row)
    for key in ("config", "warnings"):
        if key in found:
            found[key] = _decoded(found[key])
    return found


async def latest_config(db: Queries) -> dict[str, Any] | None:
    row = await db.fetchrow(LATEST_CONFIG)
    return _config_row(row) if row else None


async def config_version(db: Queries, version: int) -> dict[str, Any] | None:
    row = await db.fetchrow(CONFIG_VERSION, version)
    return _config_row(row) if row else None


async def config_versions(db: Queries) -> list[dict[str, Any]]:
    return [_config_row(row) for row in await db.fetch(CONFIG_VERSIONS)]


async def save_config(db: Queries, config: dict[str, Any], warnings: list[str], source: str,
                      created_by: str | None, now: datetime) -> int:
    return int(await db.fetchval(SAVE_CONFIG, json_text(config), json_text(warnings), source,
                                 created_by, now))


# -- agent history: state changes and supervisor overrides --------------------------------------

RECORD_STATE_CHANGE = (f"INSERT INTO {S}.agent_state_changes (agent_id, at, previous, state,"
                       " reason, call_id) VALUES ($1, $2, $3, $4, $5, $6)")
MARK_WRAPUP_ENDED = (f"UPDATE {S}.queue_entries SET wrapup_ended_at = $2 WHERE call_id = $1"
                     " AND wrapup_ended_at IS NULL AND answered_at IS NOT NULL")
AUDIT_OF = f"SELECT * FROM {S}.agent_state_audit WHERE agent_id = $1 ORDER BY id"
LAST_SERVED = f"""
    SELECT DISTINCT ON (customer->>'account') customer->>'account' AS account, agent_id,
           answered_at
      FROM {S}.queue_entries
     WHERE answered_at >= $1 AND agent_id IS NOT NULL AND customer->>'account' IS NOT NULL
     ORDER BY customer->>'account', answered_at DESC"""


RECORD_AUDIT = (f"INSERT INTO {S}.agent_state_audit (agent_id, at, actor, from_state,"
                " from_reason, to_state, to_reason, why, deferred, call_id)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *")


async def record_audit(db: Queries, *, agent_id: str, at: datetime, actor: str,
                       from_state: str, from_reason: str | None, to_state: str,
                       to_reason: str | None, why: str, deferred: bool,
                       call_id: str | None) -> dict[str, Any]:
    row = await db.fetchrow(RECORD_AUDIT, agent_id, at, actor, from_state, from_reason,
                            to_state, to_reason, why, deferred, call_id)
    return dict(row)


async def audit_of(db: Queries, agent_id: str) -> list[dict[str, Any]]:
    return [dict(row) for row in await db.fetch(AUDIT_OF, agent_id)]


async def last_served(db: Queries, since: datetime) -> list[tuple[str, str, datetime]]:
    """(customer account, agent, answered at) of the latest answered call of each customer
    since ``since``: the preferred-agent history a rebuilt engine starts from."""
    return [(row["account"], row["agent_id"], row["answered_at"])
            for row in await db.fetch(LAST_SERVED, since)]
