"""Households, members and their identifiers; outbox, processed events, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from amana_common.migrations import create_infrastructure_tables, drop_infrastructure_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_infrastructure_tables()
    op.execute("CREATE SEQUENCE household_number_seq START 1")
    op.create_table(
        "households",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("household_number", sa.String(20), nullable=False),
        sa.Column("location_code", sa.String(50), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("address", sa.String(500)),
        sa.Column("phone", sa.String(20)),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.UniqueConstraint("household_number", name="uq_households_household_number"),
        sa.CheckConstraint(
            "status IN ('active', 'under_review', 'suspended', 'exited')",
            name="status",  # the naming convention makes it ck_households_status
        ),
    )
    op.create_index("ix_households_location_code", "households", ["location_code"])
    op.create_index("ix_households_status", "households", ["status"])
    op.create_table(
        "members",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "household_id",
            UUID(as_uuid=True),
            sa.ForeignKey(
                "households.id", ondelete="CASCADE", name="fk_members_household_id_households"
            ),
            nullable=False,
        ),
        sa.Column("position", sa.SmallInteger, nullable=False),
        sa.Column("is_head", sa.Boolean, nullable=False),
        sa.Column("relationship", sa.String(20), nullable=False),
        sa.Column("given_name", sa.String(100), nullable=False),
        sa.Column("family_name", sa.String(100), nullable=False),
        sa.Column("sex", sa.String(10), nullable=False),
        sa.Column("date_of_birth", sa.Date, nullable=False),
        sa.Column("disability", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("household_id", "position", name="uq_members_household_id"),
    )
    # The database, not only the API, guarantees one head of household.
    op.create_index(
        "uq_members_one_head",
        "members",
        ["household_id"],
        unique=True,
        postgresql_where=sa.text("is_head"),
    )
    op.create_table(
        "member_identifiers",
        sa.Column(
            "member_id",
            UUID(as_uuid=True),
            sa.ForeignKey(
                "members.id", ondelete="CASCADE", name="fk_member_identifiers_member_id_members"
            ),
            nullable=False,
        ),
        sa.Column("scheme", sa.String(30), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "scheme", name="pk_member_identifiers"),
    )
    op.create_index("ix_member_identifiers_scheme", "member_identifiers", ["scheme", "value"])


def downgrade() -> None:
    op.drop_table("member_identifiers")
    op.drop_table("members")
    op.drop_table("households")
    op.execute("DROP SEQUENCE household_number_seq")
    drop_infrastructure_tables()
