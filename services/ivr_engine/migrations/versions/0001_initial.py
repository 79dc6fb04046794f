"""initial: messaging tables and IVR sessions"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging import create_messaging_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_messaging_tables(op, "ivr")
    op.create_table(
        "sessions",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=False, unique=True),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("menu", sa.String(128), nullable=False),
        sa.Column("menu_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("node", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", JSONB, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        schema="ivr",
    )
    # The timeout poller scans only sessions waiting for digits.
    op.create_index("ix_sessions_deadline", "sessions", ["deadline"], schema="ivr",
                    postgresql_where=sa.text("deadline IS NOT NULL"))
