"""active/standby: the leader lease (one row) that decides which acd_router routes"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

SCHEMA = "acd"


def upgrade() -> None:
    # One row. The holder renews expires_at; a standby takes the row over once it has
    # expired, bumping epoch. Every routing transaction checks the epoch it was granted, so
    # an ex-holder that was paused past its expiry can no longer write (fencing).
    op.create_table(
        "leader_lease",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("url", sa.String(256)),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("leader_lease", schema=SCHEMA)
