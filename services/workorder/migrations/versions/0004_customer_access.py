"""customer access audit: every unmasked read of a customer's personal data"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

S = "workorder"


def upgrade() -> None:
    op.create_table(
        "customer_access",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("scopes", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_index("ix_customer_access_account", "customer_access", ["account", "id"],
                    schema=S)


def downgrade() -> None:
    op.drop_index("ix_customer_access_account", "customer_access", schema=S)
    op.drop_table("customer_access", schema=S)
