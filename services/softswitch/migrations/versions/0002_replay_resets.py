"""replay resets: who closed earlier replays' leftovers, when, and what"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"

SCHEMA = "softswitch"


def upgrade() -> None:
    op.create_table(
        "replay_resets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("calls_released", sa.Integer, nullable=False),
        sa.Column("entries_withdrawn", sa.Integer, nullable=False),
        sa.Column("call_ids", JSONB, nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("replay_resets", schema=SCHEMA)
