"""call teams: the handling agent's team and department, so that a team's supervisor reads
and controls its own agents' calls only"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

SCHEMA = "cti"


def upgrade() -> None:
    for column in ("team", "department"):
        op.add_column("calls", sa.Column(column, sa.String(64)), schema=SCHEMA)


def downgrade() -> None:
    for column in ("team", "department"):
        op.drop_column("calls", column, schema=SCHEMA)
