"""Tables of the ``acd`` schema (the migrations create them; this is what the code queries)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "acd"
metadata = MetaData(schema=SCHEMA)

agents = Table(
    "agents", metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("reason", String(64)),
    Column("skills", JSONB, nullable=False),
    Column("device", String(128), nullable=False),
    Column("team", String(64)),
    Column("state_since", DateTime(timezone=True)),
    Column("ready_since", DateTime(timezone=True)),
    Column("calls_handled", Integer, nullable=False),
    Column("handled_day", Date),
    Column("pending_state", String(16)),
    Column("pending_reason", String(64)),
    Column("call_id", String(64)),
    Column("reservation_id", String(64)),
    Column("wrapup_deadline", DateTime(timezone=True)),
    Column("department", String(64)),
    Column("wrapup_mandatory", Boolean, nullable=False, server_default=text("false")),
    Column("wrapup_limit", DateTime(timezone=True)),
    Column("auto_ready_at", DateTime(timezone=True)),
    Index("ix_agents_wrapup_deadline", "wrapup_deadline",
          postgresql_where=text("wrapup_deadline IS NOT NULL")),
    Index("ix_agents_auto_ready_at", "auto_ready_at",
          postgresql_where=text("auto_ready_at IS NOT NULL")),
)

queues = Table(
    "queues", metadata,
    Column("name", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

queue_entries = Table(
    "queue_entries", metadata,
    Column("call_id", String(64), primary_key=True),
    Column("queue", String(64), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("skills", JSONB, nullable=False),
    Column("customer", JSONB),
    Column("from_number", String(64)),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("agent_id", String(64)),
    Column("reservation_id", String(64)),
    Column("reservation_expires_at", DateTime(timezone=True)),
    Column("answered_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("ring_failures", Integer, nullable=False),
    # Why a call was turned away (closed, no_agents, max_length, max_wait).
    Column("outcome_reason", String(32)),
    # When the answering agent left wrap-up (talk + wrap-up = handle time).
    Column("wrapup_ended_at", DateTime(timezone=True)),
    # Virtual hold: the number to call back, and the current agent-first dial's call id.
    Column("callback_number", String(64)),
    Column("callback_call_id", String(80), unique=True),
    Column("callback_dials", Integer, nullable=False, server_default="0"),
    Index("ix_queue_entries_live", "queue", "state",
          postgresql_where=text("state IN ('waiting', 'reserved')")),
    Index("ix_queue_entries_expiry", "reservation_expires_at",
          postgresql_where=text("reservation_expires_at IS NOT NULL")),
)

# Every reservation made, with how it ended: GET /calls shows it, statistics will read it.
routing_decisions = Table(
    "routing_decisions", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("reservation_id", String(64), nullable=False, unique=True),
    Column("call_id", String(64), nullable=False, index=True),
    Column("agent_id", String(64)),
    Column("queue", String(64), nullable=False),
    Column("strategy", String(32), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("alerting_at", DateTime(timezone=True)),
    # pending, connected, ring_failed, expired, cancelled, withdrawn (a supervisor force)
    Column("outcome", String(16), nullable=False),
    Column("outcome_reason", String(32)),
    Column("outcome_at", DateTime(timezone=True)),
    # reserved, overflowed, callback, released; the engine's explanation of it.
    Column("kind", String(16), nullable=False, server_default="reserved"),
    Column("step", Integer),
    Column("explanation", JSONB),
)

# Every routing configuration ever applied; the highest version is in force.
routing_configs = Table(
    "routing_configs", metadata,
    Column("version", Integer, primary_key=True),
    Column("config", JSONB, nullable=False),
    Column("warnings", JSONB, nullable=False),
    Column("source", String(16), nullable=False),
    Column("created_by", String(128)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

engine_state = Table(
    "engine_state", metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", BigInteger, nullable=False),
)

# Calls CTI released before ACD heard of them: a late ivr.session.completed must not queue
# a call that is already gone (events from different producers can cross).
released_calls = Table(
    "released_calls", metadata,
    Column("call_id", String(64), primary_key=True),
    Column("released_at", DateTime(timezone=True), nullable=False),
)

# Every agent state change, kept for the statistics (occupancy is time spent in states).
agent_state_changes = Table(
    "agent_state_changes", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("agent_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("previous", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(64)),
    Column("call_id", String(64)),
)

# Supervisor overrides of agent states: who, when, from, to, why.
agent_state_audit = Table(
    "agent_state_audit", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("agent_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("from_reason", String(64)),
    Column("to_state", String(16), nullable=False),
    Column("to_reason", String(64)),
    Column("why", String(256), nullable=False),
    # True: the agent was on a call, so the forced state waits for the call to end.
    Column("deferred", Boolean, nullable=False),
    Column("call_id", String(64)),
)
