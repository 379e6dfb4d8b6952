"""The registry's projection of payment providers and their pay points (from provider events).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from amana_common.value_sets import one_of

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The value sets as they were when this migration was written: a migration is history.
PROVIDER_STATUSES = ("active", "suspended")
PAY_POINT_STATUSES = ("active", "inactive")


def upgrade() -> None:
    op.create_table(
        "projected_providers",
        sa.Column("provider_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("mechanisms", ARRAY(sa.String(20)), nullable=False),
        sa.Column("currencies", ARRAY(sa.String(3)), nullable=False),
        sa.Column("service_areas", ARRAY(sa.String(50)), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(one_of("status", PROVIDER_STATUSES), name="status"),
    )
    op.create_table(
        "projected_pay_points",
        sa.Column("pay_point_id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "provider_id",
            UUID(as_uuid=True),
            sa.ForeignKey(
                "projected_providers.provider_id",
                ondelete="CASCADE",
                name="fk_projected_pay_points_provider_id_projected_providers",
            ),
            nullable=False,
        ),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("location_codes", ARRAY(sa.String(50)), nullable=False),
        sa.CheckConstraint(one_of("status", PAY_POINT_STATUSES), name="status"),
    )
    op.create_index(
        "ix_projected_pay_points_provider_id",
        "projected_pay_points",
        ["provider_id"],
    )


def downgrade() -> None:
    op.drop_table("projected_pay_points")
    op.drop_table("projected_providers")
