"""initial: recordings, access audit, messaging tables"""
import sqlalchemy as sa
from alembic import op

from shared.messaging import create_messaging_tables

revision = "0001"
down_revision = None

SCHEMA = "recording"


def upgrade() -> None:
    create_messaging_tables(op, SCHEMA)
    op.create_table(
        "recordings",
        sa.Column("recording_id", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(128), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("connected", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("caller", sa.String(64), nullable=True),
        sa.Column("callee", sa.String(64), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("call_ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("media_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("media_ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sample_rate", sa.Integer, nullable=True),
        sa.Column("samples", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duration_seconds", sa.Float, nullable=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("path", sa.String(512), nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_recordings_agent_id", "recordings", ["agent_id"], schema=SCHEMA)
    op.create_index("ix_recordings_started_at", "recordings", ["started_at"], schema=SCHEMA)
    op.create_table(
        "access_audit",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("recording_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("scopes", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_access_audit_recording_id", "access_audit", ["recording_id"],
                    schema=SCHEMA)
