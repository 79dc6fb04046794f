"""virtual hold: a queue entry may hold a callback number (the caller hung up and keeps their
place) and the outbound call of its current agent-first dial"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

SCHEMA = "acd"


def upgrade() -> None:
    op.add_column("queue_entries", sa.Column("callback_number", sa.String(64)), schema=SCHEMA)
    op.add_column("queue_entries", sa.Column("callback_call_id", sa.String(80)), schema=SCHEMA)
    op.add_column("queue_entries", sa.Column("callback_dials", sa.Integer, nullable=False,
                                             server_default="0"), schema=SCHEMA)
    # CTI's events about an agent-first dial name the outbound call.
    op.create_index("ix_queue_entries_callback_call_id", "queue_entries", ["callback_call_id"],
                    unique=True, schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_queue_entries_callback_call_id", "queue_entries", schema=SCHEMA)
    for column in ("callback_dials", "callback_call_id", "callback_number"):
        op.drop_column("queue_entries", column, schema=SCHEMA)
