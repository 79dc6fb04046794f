"""recording teams: the agent's team and department, so that a team's supervisor finds and
hears its own agents' recordings only"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    for column in ("team", "department"):
        op.add_column("recordings", sa.Column(column, sa.String(64)), schema="recording")


def downgrade() -> None:
    for column in ("team", "department"):
        op.drop_column("recordings", column, schema="recording")
