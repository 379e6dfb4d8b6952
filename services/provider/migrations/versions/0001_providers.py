"""Providers, pay points, status history; outbox, processed events, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from amana_common.migrations import create_infrastructure_tables, drop_infrastructure_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MECHANISMS = "'mobile_money', 'bank_transfer', 'cash_pay_point', 'prepaid_card', 'voucher'"
WEEKDAYS = "'mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'"


def _timestamps(*names: str) -> list[sa.Column[object]]:
    return [sa.Column(name, sa.DateTime(timezone=True), nullable=False) for name in names]


def _provider_id(table: str) -> sa.Column[object]:
    foreign_key = sa.ForeignKey("providers.id", name=f"fk_{table}_provider_id_providers")
    return sa.Column("provider_id", UUID(as_uuid=True), foreign_key, nullable=False)


def upgrade() -> None:
    create_infrastructure_tables()
    op.create_table(
        "providers",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("legal_name", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("currencies", ARRAY(sa.String(3)), nullable=False),
        sa.Column("mechanisms", ARRAY(sa.String(20)), nullable=False),
        sa.Column("service_areas", ARRAY(sa.String(50)), nullable=False),
        sa.Column("contact", JSONB),
        sa.Column("fee_currency", sa.String(3), nullable=False),
        sa.Column("fee_fixed_minor", sa.BigInteger, nullable=False),
        sa.Column("fee_basis_points", sa.Integer, nullable=False),
        sa.Column("delivery_mode", sa.String(4), nullable=False),
        sa.Column("delivery_base_url", sa.String(2048)),
        sa.Column("delivery_file_profile", JSONB),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("status_reason", sa.String(500)),
        *_timestamps("status_changed_at", "registered_at", "updated_at"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.UniqueConstraint("code", name="uq_providers_code"),
        sa.CheckConstraint("country ~ '^[A-Z]{2}$'", name="country"),
        sa.CheckConstraint("cardinality(currencies) >= 1", name="currencies"),
        sa.CheckConstraint(
            f"cardinality(mechanisms) >= 1 AND mechanisms <@ ARRAY[{MECHANISMS}]::varchar[]",
            name="mechanisms",
        ),
        sa.CheckConstraint("cardinality(service_areas) >= 1", name="service_areas"),
        sa.CheckConstraint(
            "fee_fixed_minor >= 0 AND fee_basis_points BETWEEN 0 AND 10000 "
            "AND fee_currency = ANY (currencies)",
            name="fee",
        ),
        sa.CheckConstraint(
            "(delivery_mode = 'api' AND delivery_base_url IS NOT NULL "
            "AND delivery_file_profile IS NULL) OR (delivery_mode = 'file' "
            "AND delivery_file_profile IS NOT NULL AND delivery_base_url IS NULL)",
            name="delivery",
        ),
        sa.CheckConstraint(
            "status = 'active' OR (status = 'suspended' AND status_reason IS NOT NULL)",
            name="status",
        ),
    )
    op.create_index("ix_providers_status", "providers", ["status"])
    op.create_index("ix_providers_mechanisms", "providers", ["mechanisms"], postgresql_using="gin")
    op.create_index(
        "ix_providers_service_areas", "providers", ["service_areas"], postgresql_using="gin"
    )
    op.create_table(
        "pay_points",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        _provider_id("pay_points"),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("location_codes", ARRAY(sa.String(50)), nullable=False),
        sa.Column("latitude", sa.Double),
        sa.Column("longitude", sa.Double),
        sa.Column("opening_days", ARRAY(sa.String(3)), nullable=False),
        sa.Column("daily_capacity", sa.Integer, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        *_timestamps("created_at", "updated_at"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        # One code per provider: the provider's own agent or branch code.
        sa.UniqueConstraint("provider_id", "code", name="uq_pay_points_provider_id"),
        sa.CheckConstraint("status IN ('active', 'inactive')", name="status"),
        sa.CheckConstraint("daily_capacity > 0", name="daily_capacity"),
        sa.CheckConstraint("cardinality(location_codes) >= 1", name="locations"),
        sa.CheckConstraint(f"opening_days <@ ARRAY[{WEEKDAYS}]::varchar[]", name="opening_days"),
        sa.CheckConstraint(
            "(latitude IS NULL AND longitude IS NULL) OR (latitude BETWEEN -90 AND 90 "
            "AND longitude BETWEEN -180 AND 180)",
            name="gps",
        ),
    )
    op.create_index(
        "ix_pay_points_location_codes", "pay_points", ["location_codes"], postgresql_using="gin"
    )
    op.create_table(
        "provider_status_changes",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        _provider_id("provider_status_changes"),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("actor", sa.String(200)),
        *_timestamps("changed_at"),
        sa.CheckConstraint("status IN ('active', 'suspended')", name="status"),
    )
    op.create_index(
        "ix_provider_status_changes_provider_id", "provider_status_changes", ["provider_id"]
    )


def downgrade() -> None:
    op.drop_table("provider_status_changes")
    op.drop_table("pay_points")
    op.drop_table("providers")
    drop_infrastructure_tables()
