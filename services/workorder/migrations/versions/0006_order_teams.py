"""orders carry the team and department of the agent who took them, so a team's supervisor
reads its team's orders (the data scopes of the trust issue)"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

S = "workorder"


def upgrade() -> None:
    op.add_column("orders", sa.Column("team", sa.String(64)), schema=S)
    op.add_column("orders", sa.Column("agent_department", sa.String(64)), schema=S)


def downgrade() -> None:
    op.drop_column("orders", "agent_department", schema=S)
    op.drop_column("orders", "team", schema=S)
