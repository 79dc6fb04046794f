"""order reads on the customer access audit: which order's contact number and address a
person was shown"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

S = "workorder"


def upgrade() -> None:
    op.add_column("customer_access", sa.Column("order_id", sa.String(40)), schema=S)


def downgrade() -> None:
    op.drop_column("customer_access", "order_id", schema=S)
