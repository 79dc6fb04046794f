"""auto-ready: when an agent put in not ready by a ring no answer is made ready again (the
ACD's own timer, when configured)"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

SCHEMA = "acd"


def upgrade() -> None:
    op.add_column("agents", sa.Column("auto_ready_at", sa.DateTime(timezone=True)),
                  schema=SCHEMA)
    op.create_index("ix_agents_auto_ready_at", "agents", ["auto_ready_at"], schema=SCHEMA,
                    postgresql_where=sa.text("auto_ready_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_agents_auto_ready_at", "agents", schema=SCHEMA)
    op.drop_column("agents", "auto_ready_at", schema=SCHEMA)
