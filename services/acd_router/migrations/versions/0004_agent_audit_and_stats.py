"""agent state history and supervisor audit; per-queue wrap-up on agents; wrap-up end on calls
(the statistics read these)"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

SCHEMA = "acd"


def upgrade() -> None:
    op.add_column("agents", sa.Column("wrapup_mandatory", sa.Boolean, nullable=False,
                                      server_default=sa.false()), schema=SCHEMA)
    op.add_column("agents", sa.Column("wrapup_limit", sa.DateTime(timezone=True)),
                  schema=SCHEMA)
    # When the agent left wrap-up: talk + wrap-up is the call's handle time (AHT).
    op.add_column("queue_entries", sa.Column("wrapup_ended_at", sa.DateTime(timezone=True)),
                  schema=SCHEMA)
    op.create_index("ix_queue_entries_answered_at", "queue_entries", ["answered_at"],
                    schema=SCHEMA)
    op.create_index("ix_queue_entries_ended_at", "queue_entries", ["ended_at"], schema=SCHEMA)
    op.create_index("ix_routing_decisions_outcome_at", "routing_decisions", ["outcome_at"],
                    schema=SCHEMA)
    # Every agent state change (occupancy is time in these states).
    op.create_table(
        "agent_state_changes",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("call_id", sa.String(64)),
        schema=SCHEMA,
    )
    op.create_index("ix_agent_state_changes_agent_at", "agent_state_changes",
                    ["agent_id", "at"], schema=SCHEMA)
    op.create_index("ix_agent_state_changes_at", "agent_state_changes", ["at"], schema=SCHEMA)
    # Supervisor overrides: who, when, from, to, why (and whether it waited for the call).
    op.create_table(
        "agent_state_audit",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("from_reason", sa.String(64)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("to_reason", sa.String(64)),
        sa.Column("why", sa.String(256), nullable=False),
        sa.Column("deferred", sa.Boolean, nullable=False),
        sa.Column("call_id", sa.String(64)),
        schema=SCHEMA,
    )
    op.create_index("ix_agent_state_audit_agent", "agent_state_audit", ["agent_id", "id"],
                    schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("agent_state_audit", schema=SCHEMA)
    op.drop_table("agent_state_changes", schema=SCHEMA)
    op.drop_index("ix_routing_decisions_outcome_at", "routing_decisions", schema=SCHEMA)
    op.drop_index("ix_queue_entries_ended_at", "queue_entries", schema=SCHEMA)
    op.drop_index("ix_queue_entries_answered_at", "queue_entries", schema=SCHEMA)
    op.drop_column("queue_entries", "wrapup_ended_at", schema=SCHEMA)
    op.drop_column("agents", "wrapup_limit", schema=SCHEMA)
    op.drop_column("agents", "wrapup_mandatory", schema=SCHEMA)
