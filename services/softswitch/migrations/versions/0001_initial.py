"""initial: messaging tables, replays, line errors, per-call outcomes"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging import create_messaging_tables

revision = "0001"
down_revision = None

SCHEMA = "softswitch"


def upgrade() -> None:
    create_messaging_tables(op, SCHEMA)
    op.create_table(
        "replays",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("trace_name", sa.String(200), nullable=True),
        sa.Column("speed", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("calls_total", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress", JSONB, nullable=False),
        sa.Column("report", JSONB, nullable=True),
        sa.Column("failure", sa.Text, nullable=True),
        schema=SCHEMA,
    )
    op.create_table(
        "replay_line_errors",
        sa.Column("replay_id", sa.String(32),
                  sa.ForeignKey(f"{SCHEMA}.replays.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("line", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("error", sa.Text, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "replay_calls",
        sa.Column("replay_id", sa.String(32),
                  sa.ForeignKey(f"{SCHEMA}.replays.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("trace_call_id", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("placed_at", sa.Float, nullable=True),
        sa.Column("queued_at", sa.Float, nullable=True),
        sa.Column("connected_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("talk", sa.Float, nullable=True),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("callback", JSONB, nullable=True),
        schema=SCHEMA,
    )
    op.create_index("ix_replay_calls_call_id", "replay_calls", ["call_id"], schema=SCHEMA)
