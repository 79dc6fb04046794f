"""routing engine: versioned routing configs, decision explanations, engine generation"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"

SCHEMA = "acd"


def upgrade() -> None:
    op.create_table(
        "routing_configs",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("config", JSONB, nullable=False),
        sa.Column("warnings", JSONB, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    # Bumped by every routing transaction: a process whose in-memory engine saw an older
    # generation rebuilds it from these tables before deciding anything.
    op.create_table(
        "engine_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        schema=SCHEMA,
    )
    op.execute(f"INSERT INTO {SCHEMA}.engine_state (id, generation) VALUES (1, 0)")
    op.add_column("routing_decisions", sa.Column("kind", sa.String(16), nullable=False,
                                                 server_default="reserved"), schema=SCHEMA)
    op.add_column("routing_decisions", sa.Column("step", sa.Integer), schema=SCHEMA)
    op.add_column("routing_decisions", sa.Column("explanation", JSONB), schema=SCHEMA)
    # Limit outcomes (overflow, callback, release) are decisions without an agent.
    op.alter_column("routing_decisions", "agent_id", nullable=True, schema=SCHEMA)
    op.alter_column("routing_decisions", "expires_at", nullable=True, schema=SCHEMA)
    op.add_column("queue_entries", sa.Column("outcome_reason", sa.String(32)), schema=SCHEMA)
    op.add_column("agents", sa.Column("department", sa.String(64)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("agents", "department", schema=SCHEMA)
    op.drop_column("queue_entries", "outcome_reason", schema=SCHEMA)
    op.execute(f"DELETE FROM {SCHEMA}.routing_decisions WHERE agent_id IS NULL")
    op.alter_column("routing_decisions", "expires_at", nullable=False, schema=SCHEMA)
    op.alter_column("routing_decisions", "agent_id", nullable=False, schema=SCHEMA)
    op.drop_column("routing_decisions", "explanation", schema=SCHEMA)
    op.drop_column("routing_decisions", "step", schema=SCHEMA)
    op.drop_column("routing_decisions", "kind", schema=SCHEMA)
    op.drop_table("engine_state", schema=SCHEMA)
    op.drop_table("routing_configs", schema=SCHEMA)
