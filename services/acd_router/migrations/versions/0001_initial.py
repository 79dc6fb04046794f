"""initial: agents, queues, queue entries, routing decisions, messaging tables"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging import create_messaging_tables

revision = "0001"
down_revision = None

SCHEMA = "acd"


def upgrade() -> None:
    create_messaging_tables(op, SCHEMA)
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("skills", JSONB, nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("team", sa.String(64)),
        sa.Column("state_since", sa.DateTime(timezone=True)),
        sa.Column("ready_since", sa.DateTime(timezone=True)),
        sa.Column("calls_handled", sa.Integer, nullable=False),
        sa.Column("handled_day", sa.Date),
        sa.Column("pending_state", sa.String(16)),
        sa.Column("pending_reason", sa.String(64)),
        sa.Column("call_id", sa.String(64)),
        sa.Column("reservation_id", sa.String(64)),
        sa.Column("wrapup_deadline", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("ix_agents_wrapup_deadline", "agents", ["wrapup_deadline"], schema=SCHEMA,
                    postgresql_where=sa.text("wrapup_deadline IS NOT NULL"))
    op.create_table(
        "queues",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "queue_entries",
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("skills", JSONB, nullable=False),
        sa.Column("customer", JSONB),
        sa.Column("from_number", sa.String(64)),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_id", sa.String(64)),
        sa.Column("reservation_id", sa.String(64)),
        sa.Column("reservation_expires_at", sa.DateTime(timezone=True)),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("ring_failures", sa.Integer, nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_queue_entries_live", "queue_entries", ["queue", "state"], schema=SCHEMA,
                    postgresql_where=sa.text("state IN ('waiting', 'reserved')"))
    op.create_index("ix_queue_entries_expiry", "queue_entries", ["reservation_expires_at"],
                    schema=SCHEMA,
                    postgresql_where=sa.text("reservation_expires_at IS NOT NULL"))
    op.create_table(
        "routing_decisions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("reservation_id", sa.String(64), nullable=False, unique=True),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("alerting_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_reason", sa.String(32)),
        sa.Column("outcome_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("ix_routing_decisions_call_id", "routing_decisions", ["call_id"],
                    schema=SCHEMA)
    op.create_table(
        "released_calls",
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
