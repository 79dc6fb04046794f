"""initial: customers, outages, orders with history, callback tasks and attempts, recordings"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.messaging import create_messaging_tables

revision = "0001"
down_revision = None

S = "workorder"


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    create_messaging_tables(op, S)
    op.create_table(
        "customers",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("area", sa.String(64)),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("flags", JSONB, nullable=False),
        sa.Column("balance", sa.Numeric(14, 2), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        schema=S,
    )
    op.create_table(
        "customer_numbers",
        sa.Column("number", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(64),
                  sa.ForeignKey(f"{S}.customers.account", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        schema=S,
    )
    op.create_index("ix_customer_numbers_account", "customer_numbers", ["account"], schema=S)
    op.create_table(
        "outages",
        sa.Column("outage_id", sa.String(40), primary_key=True),
        sa.Column("area", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        _ts("start_at"),
        _ts("restore_eta", nullable=True),
        _ts("created_at"),
        schema=S,
    )
    op.create_index("ix_outages_area", "outages", ["area"], schema=S)
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(40), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("call_id", sa.String(128)),
        sa.Column("customer_account", sa.String(64), sa.ForeignKey(f"{S}.customers.account")),
        sa.Column("contact_number", sa.String(32)),
        sa.Column("area", sa.String(64)),
        sa.Column("description", sa.Text),
        sa.Column("category", sa.String(64)),
        sa.Column("idempotency_key", sa.String(128), unique=True),
        sa.Column("resolution", sa.Integer, nullable=False),
        sa.Column("reply", sa.Text),
        sa.Column("satisfaction", sa.String(16)),
        sa.Column("created_by", sa.String(128), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("resolved_at", nullable=True),
        _ts("closed_at", nullable=True),
        sa.UniqueConstraint("call_id", "type", name="uq_orders_call_type"),
        schema=S,
    )
    op.create_index("ix_orders_state", "orders", ["state"], schema=S)
    op.create_index("ix_orders_customer_account", "orders", ["customer_account"], schema=S)
    op.create_table(
        "order_history",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(40), sa.ForeignKey(f"{S}.orders.order_id"),
                  nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(32)),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text),
        _ts("at"),
        schema=S,
    )
    op.create_index("ix_order_history_order_id", "order_history", ["order_id"], schema=S)
    op.create_table(
        "callbacks",
        sa.Column("callback_id", sa.String(40), primary_key=True),
        sa.Column("order_id", sa.String(40), sa.ForeignKey(f"{S}.orders.order_id"),
                  nullable=False),
        sa.Column("resolution", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        _ts("due_at", nullable=True),
        sa.Column("satisfaction", sa.String(16)),
        sa.Column("outcome", sa.String(16)),
        sa.Column("last_failure", sa.String(64)),
        _ts("created_at"),
        _ts("completed_at", nullable=True),
        sa.UniqueConstraint("order_id", "resolution", name="uq_callbacks_order_resolution"),
        schema=S,
    )
    op.create_index("ix_callbacks_order_id", "callbacks", ["order_id"], schema=S)
    # The poller only scans live tasks by deadline.
    op.create_index("ix_callbacks_due", "callbacks", ["due_at"], schema=S,
                    postgresql_where=sa.text("state IN ('pending', 'dialing')"))
    op.create_table(
        "callback_attempts",
        sa.Column("callback_id", sa.String(40), sa.ForeignKey(f"{S}.callbacks.callback_id"),
                  primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("to_number", sa.String(32)),
        sa.Column("call_id", sa.String(128)),
        _ts("requested_at"),
        _ts("ended_at", nullable=True),
        sa.Column("result", sa.String(64)),
        schema=S,
    )
    op.create_index("ix_callback_attempts_call_id", "callback_attempts", ["call_id"], schema=S)
    op.create_table(
        "recordings",
        sa.Column("recording_id", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("duration_seconds", sa.Float),
        _ts("stored_at"),
        schema=S,
    )
    op.create_index("ix_recordings_call_id", "recordings", ["call_id"], schema=S)
