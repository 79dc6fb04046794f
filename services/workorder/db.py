"""Tables of the ``workorder`` schema (SQLAlchemy Core). Keep in step with ``migrations/``.

Timestamps are suite time (the service clock), written by the service, never ``now()`` in SQL,
so a replay at a high time scale stores the times the trace meant.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "workorder"
metadata = MetaData(schema=SCHEMA)


def _ts(name: str, nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(name, DateTime(timezone=True), nullable=nullable)


customers = Table(
    "customers", metadata,
    Column("account", String(64), primary_key=True),
    Column("name", String(200)),
    Column("area", String(64)),
    Column("tier", String(16), nullable=False),
    Column("flags", JSONB, nullable=False),
    Column("balance", Numeric(14, 2), nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
)

customer_numbers = Table(
    "customer_numbers", metadata,
    # A number belongs to one account at a time; the latest upsert that lists it wins.
    Column("number", String(32), primary_key=True),
    Column("account", String(64), ForeignKey("workorder.customers.account", ondelete="CASCADE"),
           nullable=False),
    Column("position", Integer, nullable=False),
    Index("ix_customer_numbers_account", "account"),
)

outages = Table(
    "outages", metadata,
    Column("outage_id", String(40), primary_key=True),
    Column("area", String(64), nullable=False),
    Column("type", String(16), nullable=False),
    _ts("start_at"),
    _ts("restore_eta", nullable=True),
    _ts("created_at"),
    Index("ix_outages_area", "area"),
)

orders = Table(
    "orders", metadata,
    Column("order_id", String(40), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("state", String(32), nullable=False),
    Column("call_id", String(128)),
    Column("customer_account", String(64), ForeignKey("workorder.customers.account")),
    Column("contact_number", String(32)),
    Column("area", String(64)),
    Column("description", Text),
    Column("category", String(64)),
    Column("idempotency_key", String(128), unique=True),
    Column("resolution", Integer, nullable=False),
    Column("reply", Text),
    Column("satisfaction", String(16)),
    Column("created_by", String(128), nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("resolved_at", nullable=True),
    _ts("closed_at", nullable=True),
    # One order per (call, type): an agent's retried POST must not open a second ticket.
    UniqueConstraint("call_id", "type", name="uq_orders_call_type"),
    Index("ix_orders_state", "state"),
    Index("ix_orders_customer_account", "customer_account"),
)

order_history = Table(
    "order_history", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("order_id", String(40), ForeignKey("workorder.orders.order_id"), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_state", String(32)),
    Column("to_state", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text),
    _ts("at"),
    Index("ix_order_history_order_id", "order_id"),
)

callbacks = Table(
    "callbacks", metadata,
    Column("callback_id", String(40), primary_key=True),
    Column("order_id", String(40), ForeignKey("workorder.orders.order_id"), nullable=False),
    Column("resolution", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    _ts("due_at", nullable=True),
    Column("satisfaction", String(16)),
    Column("outcome", String(16)),
    Column("last_failure", String(64)),
    _ts("created_at"),
    _ts("completed_at", nullable=True),
    # Exactly one callback per resolution, however the resolve request is retried.
    UniqueConstraint("order_id", "resolution", name="uq_callbacks_order_resolution"),
    Index("ix_callbacks_order_id", "order_id"),
    Index("ix_callbacks_due", "due_at", postgresql_where=text("state IN ('pending', 'dialing')")),
)

callback_attempts = Table(
    "callback_attempts", metadata,
    Column("callback_id", String(40), ForeignKey("workorder.callbacks.callback_id"),
           primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("to_number", String(32)),
    Column("call_id", String(128)),
    _ts("requested_at"),
    _ts("ended_at", nullable=True),
    # "answered", or why the attempt failed (no_answer, busy, timeout, no_answer_given ...).
    Column("result", String(64)),
    Index("ix_callback_attempts_call_id", "call_id"),
)

recordings = Table(
    "recordings", metadata,
    # Keyed by call, not order: the file is often stored before the agent files the order.
    Column("recording_id", String(64), primary_key=True),
    Column("call_id", String(128), nullable=False),
    Column("duration_seconds", Float),
    _ts("stored_at"),
    Index("ix_recordings_call_id", "call_id"),
)
