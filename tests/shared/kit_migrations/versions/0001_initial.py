"""initial"""
import sqlalchemy as sa
from alembic import op

from shared.messaging import create_messaging_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_messaging_tables(op, "kit")
    op.create_table("notes", sa.Column("call_id", sa.String, primary_key=True),
                    sa.Column("seen", sa.String, nullable=False), schema="kit")
