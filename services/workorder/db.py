"""Tables of the ``workorder`` schema (SQLAlchemy Core). Keep in step with ``migrations/``.

Timestamps are suite time (the service clock), written by the service, never ``now()`` in SQL,
so a replay at a high time scale stores the times the trace meant.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    # The repair order every report of this outage joins, once somebody has reported it.
    Column("order_id", String(40)),
    _ts("restored_at", nullable=True),
    Column("restored_by", String(128)),
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
    # 0002: the closed loop.
    Column("priority", String(16), nullable=False, server_default="normal"),
    Column("department", String(64)),
    Column("owner", String(128)),
    Column("dispatches", Integer, nullable=False, server_default="0"),
    Column("address", Text),
    Column("ivr_path", JSONB),
    Column("flags", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # A callback_request case's abandoned call: not ``call_id`` (no agent took the case on
    # that call), and unique so each abandoned call owes exactly one case.
    Column("abandoned_call_id", String(128), unique=True),
    _ts("first_resolved_at", nullable=True),
    # The outage this repair order stands for (reports from its area join it).
    Column("outage_id", String(40)),
    # 0006: the team and department of the agent who took the order (from its token), so
    # their supervisors read it; ``department`` above is where the order is dispatched.
    Column("team", String(64)),
    Column("agent_department", String(64)),
    # One order per (call, type): an agent's retried POST must not open a second ticket.
    UniqueConstraint("call_id", "type", name="uq_orders_call_type"),
    Index("ix_orders_state", "state"),
    Index("ix_orders_customer_account", "customer_account"),
    Index("ix_orders_department", "department"),
    Index("ix_orders_owner", "owner"),
    Index("ix_orders_area_type", "area", "type"),
)

# Callers whose report joined an existing order (the same fault, or the same outage) instead
# of opening a new one: each is on the order's callback list.
order_reporters = Table(
    "order_reporters", metadata,
    Column("reporter_id", String(40), primary_key=True),
    Column("order_id", String(40), ForeignKey("workorder.orders.order_id"), nullable=False),
    Column("type", String(32), nullable=False),
    Column("call_id", String(128)),
    Column("customer_account", String(64), ForeignKey("workorder.customers.account")),
    Column("contact_number", String(32)),
    Column("description", Text),
    Column("idempotency_key", String(128), unique=True),
    Column("reason", String(64), nullable=False),
    Column("linked_by", String(128), nullable=False),
    _ts("linked_at"),
    UniqueConstraint("call_id", "type", name="uq_order_reporters_call_type"),
    Index("ix_order_reporters_order_id", "order_id"),
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
    # The reporter called back; null for the order's own caller.
    Column("reporter_id", String(40)),
    # Exactly one callback per resolution and party, however the resolve request is retried.
    UniqueConstraint("order_id", "resolution", "reporter_id",
                     name="uq_callbacks_order_resolution_party",
                     postgresql_nulls_not_distinct=True),
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

sla_policies = Table(
    "sla_policies", metadata,
    Column("version", Integer, primary_key=True),
    Column("document", JSONB, nullable=False),
    Column("created_by", String(128), nullable=False),
    _ts("created_at"),
)

calendars = Table(
    "calendars", metadata,
    # A year loaded over REST; it overrides the shipped file of that year.
    Column("year", Integer, primary_key=True),
    Column("document", JSONB, nullable=False),
    Column("updated_by", String(128), nullable=False),
    _ts("updated_at"),
)

sla_clocks = Table(
    "sla_clocks", metadata,
    Column("clock_id", BigInteger, primary_key=True, autoincrement=True),
    Column("order_id", String(40), ForeignKey("workorder.orders.order_id"), nullable=False),
    Column("name", String(32), nullable=False),
    # Work round: resolution + 1 for work clocks, the resolution for reply / callback clocks.
    Column("round", Integer, nullable=False),
    Column("callback_id", String(40)),
    Column("basis", String(16), nullable=False),
    Column("budget_seconds", Float, nullable=False),
    Column("elapsed_seconds", Float, nullable=False),
    _ts("running_since", nullable=True),
    Column("state", String(16), nullable=False),
    Column("urged", Boolean, nullable=False),
    Column("level", Integer, nullable=False),
    _ts("due_at", nullable=True),
    _ts("next_fire_at", nullable=True),
    Column("policy_version", Integer, nullable=False),
    Column("priority", String(16), nullable=False),
    _ts("started_at"),
    _ts("stopped_at", nullable=True),
    Index("ix_sla_clocks_order_id", "order_id"),
    # The timer loop's only query: the earliest due rows.
    Index("ix_sla_clocks_next_fire", "next_fire_at",
          postgresql_where=text("next_fire_at IS NOT NULL")),
)

clock_history = Table(
    "clock_history", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("clock_id", BigInteger, ForeignKey("workorder.sla_clocks.clock_id"), nullable=False),
    Column("order_id", String(40), nullable=False),
    Column("name", String(32), nullable=False),
    # started, paused, resumed, stopped, rebudgeted, urged, escalated
    Column("event", String(16), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text),
    Column("budget_seconds", Float, nullable=False),
    Column("elapsed_seconds", Float, nullable=False),
    Column("priority", String(16), nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    # For urged / escalated: when the threshold was due (fired_at - due_at is the lag).
    _ts("due_at", nullable=True),
    _ts("at"),
    Index("ix_clock_history_order_id", "order_id"),
)

call_contexts = Table(
    "call_contexts", metadata,
    # What the IVR and CTI told us about an inbound call, kept to make callback_request cases
    # from abandoned calls and to attach the IVR path to cases filed on the call.
    Column("call_id", String(128), primary_key=True),
    Column("account", String(64)),
    Column("from_number", String(32)),
    Column("ivr_path", JSONB),
    _ts("abandoned_at", nullable=True),
    Column("abandon_reason", String(64)),
    _ts("updated_at"),
)

customer_access = Table(
    "customer_access", metadata,
    # Who was shown a customer's personal data (name, numbers, balance), when and how: every
    # unmasked read by a person or an integrator (the suite's own lookups are not).
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # record | lookup | order
    Column("subject", String(128), nullable=False),
    Column("scopes", String(256), nullable=False),
    _ts("at"),
    Column("order_id", String(40), nullable=True),
    Index("ix_customer_access_account", "account", "id"),
)
