"""The softswitch schema: replays, their line errors and per-call outcomes."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "softswitch"
metadata = MetaData(schema=SCHEMA)

replays = Table(
    "replays", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=True),
    Column("trace_name", String(200), nullable=True),
    Column("speed", Float, nullable=False),
    # running, draining, finished, failed
    Column("state", String(16), nullable=False),
    Column("calls_total", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("progress", JSONB, nullable=False),
    Column("report", JSONB, nullable=True),
    Column("failure", Text, nullable=True),
)

line_errors = Table(
    "replay_line_errors", metadata,
    Column("replay_id", String(32), ForeignKey(f"{SCHEMA}.replays.id", ondelete="CASCADE"),
           primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("kind", String(32), nullable=True),
    Column("error", Text, nullable=False),
)

replay_calls = Table(
    "replay_calls", metadata,
    Column("replay_id", String(32), ForeignKey(f"{SCHEMA}.replays.id", ondelete="CASCADE"),
           primary_key=True),
    Column("trace_call_id", String(64), primary_key=True),
    Column("call_id", String(128), nullable=False, index=True),
    # Trace seconds from the replay start.
    Column("at", Float, nullable=False),
    Column("placed_at", Float, nullable=True),
    Column("queued_at", Float, nullable=True),
    Column("connected_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    # answered, abandoned, self_served, released_in_queue, rejected, failed; null while open
    Column("outcome", String(32), nullable=True),
    Column("agent_id", String(64), nullable=True),
    Column("talk", Float, nullable=True),
    Column("order_id", String(64), nullable=True),
    Column("callback", JSONB, nullable=True),
)

# Who closed earlier replays' leftovers (hotline replay --reset), when, and what.
resets = Table(
    "replay_resets", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("calls_released", Integer, nullable=False),
    Column("entries_withdrawn", Integer, nullable=False),
    Column("call_ids", JSONB, nullable=False),
)
