"""linked reports: repairs of one fault share an order; each reporter is owed a callback"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

S = "workorder"


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column("outages", sa.Column("order_id", sa.String(40)), schema=S)
    op.add_column("outages", _ts("restored_at", nullable=True), schema=S)
    op.add_column("outages", sa.Column("restored_by", sa.String(128)), schema=S)
    op.add_column("orders", sa.Column("outage_id", sa.String(40)), schema=S)
    op.create_index("ix_orders_area_type", "orders", ["area", "type"], schema=S)
    op.create_table(
        "order_reporters",
        sa.Column("reporter_id", sa.String(40), primary_key=True),
        sa.Column("order_id", sa.String(40), sa.ForeignKey(f"{S}.orders.order_id"),
                  nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("call_id", sa.String(128)),
        sa.Column("customer_account", sa.String(64), sa.ForeignKey(f"{S}.customers.account")),
        sa.Column("contact_number", sa.String(32)),
        sa.Column("description", sa.Text),
        sa.Column("idempotency_key", sa.String(128), unique=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("linked_by", sa.String(128), nullable=False),
        _ts("linked_at"),
        sa.UniqueConstraint("call_id", "type", name="uq_order_reporters_call_type"),
        schema=S,
    )
    op.create_index("ix_order_reporters_order_id", "order_reporters", ["order_id"], schema=S)
    op.add_column("callbacks", sa.Column("reporter_id", sa.String(40)), schema=S)
    op.drop_constraint("uq_callbacks_order_resolution", "callbacks", schema=S)
    # One callback per resolution for each party: the order's own caller (reporter_id null)
    # and every reporter linked to it.
    op.create_unique_constraint("uq_callbacks_order_resolution_party", "callbacks",
                                ["order_id", "resolution", "reporter_id"], schema=S,
                                postgresql_nulls_not_distinct=True)


def downgrade() -> None:
    op.drop_constraint("uq_callbacks_order_resolution_party", "callbacks", schema=S)
    op.execute(f"DELETE FROM {S}.callback_attempts WHERE callback_id IN "
               f"(SELECT callback_id FROM {S}.callbacks WHERE reporter_id IS NOT NULL)")
    op.execute(f"DELETE FROM {S}.callbacks WHERE reporter_id IS NOT NULL")
    op.create_unique_constraint("uq_callbacks_order_resolution", "callbacks",
                                ["order_id", "resolution"], schema=S)
    op.drop_column("callbacks", "reporter_id", schema=S)
    op.drop_index("ix_order_reporters_order_id", "order_reporters", schema=S)
    op.drop_table("order_reporters", schema=S)
    op.drop_index("ix_orders_area_type", "orders", schema=S)
    op.drop_column("orders", "outage_id", schema=S)
    for column in ("restored_by", "restored_at", "order_id"):
        op.drop_column("outages", column, schema=S)
