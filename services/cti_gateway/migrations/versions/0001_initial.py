"""initial: messaging tables and calls"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging import create_messaging_tables

revision = "0001"
down_revision = None

SCHEMA = "cti"


def upgrade() -> None:
    create_messaging_tables(op, SCHEMA)
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("from_number", sa.String(64), nullable=False),
        sa.Column("to_number", sa.String(64), nullable=False),
        sa.Column("switch_id", sa.String(64), nullable=True),
        sa.Column("party_leg", sa.String(16), nullable=False),
        sa.Column("agent_leg", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("agent_device", sa.String(128), nullable=True),
        sa.Column("reservation_id", sa.String(128), nullable=True),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("context", JSONB, nullable=False),
        sa.Column("last_prompt_id", sa.String(128), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True, unique=True),
        sa.Column("party_invite_cseq", sa.Integer, nullable=True),
        sa.Column("agent_invite_cseq", sa.Integer, nullable=True),
        sa.Column("ring_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cause", sa.String(32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_index("ix_calls_state", "calls", ["state"], schema=SCHEMA)
    op.create_index("ix_calls_offered_at", "calls", ["offered_at"], schema=SCHEMA)
    # Only live calls are looked up by switch (to release them when it disconnects).
    op.create_index("ix_calls_switch_live", "calls", ["switch_id"], schema=SCHEMA,
                    postgresql_where=sa.text("state <> 'released'"))
    # The ring timer scans only calls with an armed deadline.
    op.create_index("ix_calls_ring_deadline", "calls", ["ring_deadline"], schema=SCHEMA,
                    postgresql_where=sa.text("ring_deadline IS NOT NULL"))
