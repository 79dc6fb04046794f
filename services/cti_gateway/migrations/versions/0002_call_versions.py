"""call versions: each write checks the version it read, so that two processes can never
overwrite each other's change to a call held in memory"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

SCHEMA = "cti"


def upgrade() -> None:
    op.add_column("calls", sa.Column("version", sa.Integer, nullable=False,
                                     server_default="0"), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("calls", "version", schema=SCHEMA)
