"""Remember that a call ended without being bridged, so its stray media is discarded."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("recordings", sa.Column("ended_unbridged", sa.Boolean(), nullable=False,
                                          server_default=sa.false()), schema="recording")
