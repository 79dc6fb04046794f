"""closed loop: dispatch fields on orders, SLA policies and clocks, calendars, call contexts"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"

S = "workorder"


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column("orders", sa.Column("priority", sa.String(16), nullable=False,
                                      server_default="normal"), schema=S)
    op.add_column("orders", sa.Column("department", sa.String(64)), schema=S)
    op.add_column("orders", sa.Column("owner", sa.String(128)), schema=S)
    op.add_column("orders", sa.Column("dispatches", sa.Integer, nullable=False,
                                      server_default="0"), schema=S)
    op.add_column("orders", sa.Column("address", sa.Text), schema=S)
    op.add_column("orders", sa.Column("ivr_path", JSONB), schema=S)
    op.add_column("orders", sa.Column("flags", JSONB, nullable=False,
                                      server_default=sa.text("'[]'::jsonb")), schema=S)
    op.add_column("orders", sa.Column("abandoned_call_id", sa.String(128)), schema=S)
    op.add_column("orders", _ts("first_resolved_at", nullable=True), schema=S)
    op.create_unique_constraint("orders_abandoned_call_id_key", "orders", ["abandoned_call_id"],
                                schema=S)
    op.create_index("ix_orders_department", "orders", ["department"], schema=S)
    op.create_index("ix_orders_owner", "orders", ["owner"], schema=S)
    op.create_table(
        "sla_policies",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("document", JSONB, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        _ts("created_at"),
        schema=S,
    )
    op.create_table(
        "calendars",
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("document", JSONB, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        _ts("updated_at"),
        schema=S,
    )
    op.create_table(
        "sla_clocks",
        sa.Column("clock_id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(40), sa.ForeignKey(f"{S}.orders.order_id"),
                  nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("callback_id", sa.String(40)),
        sa.Column("basis", sa.String(16), nullable=False),
        sa.Column("budget_seconds", sa.Float, nullable=False),
        sa.Column("elapsed_seconds", sa.Float, nullable=False),
        _ts("running_since", nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("urged", sa.Boolean, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        _ts("due_at", nullable=True),
        _ts("next_fire_at", nullable=True),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        _ts("started_at"),
        _ts("stopped_at", nullable=True),
        schema=S,
    )
    op.create_index("ix_sla_clocks_order_id", "sla_clocks", ["order_id"], schema=S)
    op.create_index("ix_sla_clocks_next_fire", "sla_clocks", ["next_fire_at"], schema=S,
                    postgresql_where=sa.text("next_fire_at IS NOT NULL"))
    op.create_table(
        "clock_history",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("clock_id", sa.BigInteger, sa.ForeignKey(f"{S}.sla_clocks.clock_id"),
                  nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("budget_seconds", sa.Float, nullable=False),
        sa.Column("elapsed_seconds", sa.Float, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        _ts("due_at", nullable=True),
        _ts("at"),
        schema=S,
    )
    op.create_index("ix_clock_history_order_id", "clock_history", ["order_id"], schema=S)
    op.create_table(
        "call_contexts",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("account", sa.String(64)),
        sa.Column("from_number", sa.String(32)),
        sa.Column("ivr_path", JSONB),
        _ts("abandoned_at", nullable=True),
        sa.Column("abandon_reason", sa.String(64)),
        _ts("updated_at"),
        schema=S,
    )


def downgrade() -> None:
    for table in ("call_contexts", "clock_history", "sla_clocks", "calendars", "sla_policies"):
        op.drop_table(table, schema=S)
    op.drop_index("ix_orders_owner", "orders", schema=S)
    op.drop_index("ix_orders_department", "orders", schema=S)
    op.drop_constraint("orders_abandoned_call_id_key", "orders", schema=S)
    for column in ("first_resolved_at", "abandoned_call_id", "flags", "ivr_path", "address",
                   "dispatches", "owner", "department", "priority"):
        op.drop_column("orders", column, schema=S)
