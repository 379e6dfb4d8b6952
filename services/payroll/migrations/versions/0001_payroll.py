"""Projections of households, providers and failed payments; programmes, rule versions,
cycles, payrolls, lines and progress; outbox, processed events, idempotency keys; uuid7().

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from amana_common.migrations import (
    create_infrastructure_tables,
    drop_infrastructure_tables,
    park_outbox_rows,
    unpark_outbox_rows,
)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROGRAMME_STATUSES = "'draft', 'active', 'suspended', 'closed'"
FREQUENCY_UNITS = "'monthly', 'every_n_months', 'quarterly'"
PAYROLL_STATUSES = "'GENERATING', 'PENDING_APPROVAL', 'APPROVED', 'REJECTED', 'FAILED'"

# A time-ordered UUID (RFC 9562 version 7) for rows written in bulk by SQL: 48 bits of Unix
# milliseconds over a random UUID, with the version bits set to 0111.
UUID7 = """
CREATE FUNCTION uuid7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
    FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$
"""


def _text(*names: str, nullable: bool = False) -> list[sa.Column[object]]:
    return [sa.Column(name, sa.Text, nullable=nullable) for name in names]


def _uuid(*names: str, nullable: bool = False) -> list[sa.Column[object]]:
    return [sa.Column(name, UUID(as_uuid=True), nullable=nullable) for name in names]


def _bigint(*names: str) -> list[sa.Column[object]]:
    return [sa.Column(name, sa.BigInteger, nullable=False) for name in names]


def _moment(*names: str, nullable: bool = False) -> list[sa.Column[object]]:
    return [sa.Column(name, sa.DateTime(timezone=True), nullable=nullable) for name in names]


def upgrade() -> None:
    create_infrastructure_tables()
    park_outbox_rows()
    op.execute(UUID7)
    _projections()
    _programmes()
    _payrolls()


def _projections() -> None:
    # Columns in the order generation and simulation read them: fixed-width first, then what
    # the rules read, then what only a line's snapshot copies (PostgreSQL reads a row's
    # columns up to the last one a query needs).
    op.create_table(
        "households",
        sa.Column("household_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("duplicate_review_open", sa.Boolean, nullable=False),
        sa.Column("payable", sa.Boolean, nullable=False),
        *_text("status", "location_code"),
        sa.Column("location_ancestors", ARRAY(sa.Text), nullable=False),
        *_text("household_number"),
        sa.Column("eligibility_attributes", JSONB, nullable=False),
        sa.Column("member_birth_dates", ARRAY(sa.Date), nullable=False),
        sa.Column("member_keys", ARRAY(sa.Integer), nullable=False),
        sa.Column("not_payable_reasons", ARRAY(sa.Text), nullable=False),
        *_uuid("provider_id", nullable=True),
        *_text("mechanism", nullable=True),
        *_uuid("pay_point_id", "recipient_member_id", nullable=True),
        sa.Column("recipient_date_of_birth", sa.Date),
        *_text(
            "recipient_given_name",
            "recipient_family_name",
            "recipient_sex",
            "recipient_identifier_scheme",
            "recipient_identifier_value",
            "recipient_phone",
            "account_kind",
            "account_value",
            "account_bank_code",
            "account_holder_name",
            nullable=True,
        ),
        *_moment("updated_at", nullable=True),
        *_moment("projected_at"),
    )
    op.create_table(
        "providers",
        sa.Column("provider_id", UUID(as_uuid=True), primary_key=True),
        *_text("code", "status"),
        sa.Column("currencies", ARRAY(sa.Text), nullable=False),
        sa.Column("mechanisms", ARRAY(sa.Text), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        *_moment("projected_at"),
    )
    op.create_table(
        "provider_pay_points",
        sa.Column("pay_point_id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "provider_id",
            UUID(as_uuid=True),
            sa.ForeignKey(
                "providers.provider_id",
                name="fk_provider_pay_points_provider_id_providers",
                ondelete="CASCADE",
            ),
            nullable=False,
        ),
        *_text("status"),
    )
    op.create_index("ix_provider_pay_points_provider_id", "provider_pay_points", ["provider_id"])
    op.create_table(
        "carry_overs",
        sa.Column("payment_id", UUID(as_uuid=True), primary_key=True),
        *_uuid("programme_id", "cycle_id", "payroll_line_id", "household_id"),
        sa.Column("currency", sa.String(3), nullable=False),
        *_bigint("amount_minor"),
        *_text("reason_code"),
        *_moment("failed_at", "received_at"),
        *_uuid("carried_into_payroll_id", nullable=True),
        sa.Column("outcome", sa.String(30)),
        sa.CheckConstraint("amount_minor > 0", name="amount"),
    )
    op.create_index(
        "ix_carry_overs_waiting",
        "carry_overs",
        ["programme_id"],
        postgresql_where=sa.text("carried_into_payroll_id IS NULL"),
    )


def _programmes() -> None:
    op.create_table(
        "programmes",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.String(2000)),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("status_reason", sa.String(500)),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("end_date", sa.Date),
        sa.Column("frequency_unit", sa.String(20), nullable=False),
        *[
            sa.Column(name, sa.SmallInteger, nullable=False)
            for name in (
                "every_n_months",
                "payment_day",
                "payment_window_days",
                "generation_lead_days",
            )
        ],
        *_bigint("budget_per_cycle_minor"),
        sa.Column("carry_over", sa.Boolean, nullable=False),
        sa.Column("rules_version", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        *_moment("created_at", "updated_at"),
        sa.UniqueConstraint("code", name="uq_programmes_code"),
        sa.CheckConstraint(f"status IN ({PROGRAMME_STATUSES})", name="status"),
        sa.CheckConstraint(f"frequency_unit IN ({FREQUENCY_UNITS})", name="frequency_unit"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        sa.CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates"),
        sa.CheckConstraint(
            "every_n_months BETWEEN 1 AND 12 AND payment_day BETWEEN 1 AND 28 "
            "AND payment_window_days BETWEEN 1 AND 90 AND generation_lead_days BETWEEN 0 AND 60",
            name="frequency",
        ),
        sa.CheckConstraint("budget_per_cycle_minor >= 0", name="budget"),
    )
    op.create_table(
        "rule_versions",
        sa.Column(
            "programme_id",
            UUID(as_uuid=True),
            sa.ForeignKey("programmes.id", name="fk_rule_versions_programme_id_programmes"),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("eligibility", JSONB, nullable=False),
        sa.Column("formula", JSONB, nullable=False),
        sa.Column("budget_priority", JSONB, nullable=False),
        sa.Column("note", sa.String(500)),
        sa.Column("created_by", sa.String(200), nullable=False),
        *_moment("created_at"),
    )
    op.create_table(
        "cycles",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "programme_id",
            UUID(as_uuid=True),
            sa.ForeignKey("programmes.id", name="fk_cycles_programme_id_programmes"),
            nullable=False,
        ),
        sa.Column("sequence", sa.Integer, nullable=False),
        *[
            sa.Column(name, sa.Date, nullable=False)
            for name in ("period_start", "period_end", "payment_date", "window_end", "generate_on")
        ],
        sa.UniqueConstraint("programme_id", "sequence", name="uq_cycles_programme_id"),
    )
    op.create_index("ix_cycles_generate_on", "cycles", ["generate_on"])


def _payrolls() -> None:
    op.create_table(
        "payrolls",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "programme_id",
            UUID(as_uuid=True),
            sa.ForeignKey("programmes.id", name="fk_payrolls_programme_id_programmes"),
            nullable=False,
        ),
        sa.Column(
            "cycle_id",
            UUID(as_uuid=True),
            sa.ForeignKey("cycles.id", name="fk_payrolls_cycle_id_cycles"),
            nullable=False,
        ),
        sa.Column("rules_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        *_bigint(
            "budget_minor",
            "eligible_count",
            "line_count",
            "carried_over_count",
            "total_amount_minor",
        ),
        sa.Column("exclusions", JSONB, nullable=False),
        sa.Column("trigger", sa.String(10), nullable=False),
        sa.Column("generated_by", sa.String(200), nullable=False),
        sa.Column("changed_by", sa.String(200)),
        sa.Column("decided_by", sa.String(200)),
        *_moment("decided_at", nullable=True),
        sa.Column("rejection_reason", sa.String(500)),
        sa.Column("failure", sa.String(500)),
        *_moment("created_at"),
        *_moment("generated_at", nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.CheckConstraint(f"status IN ({PAYROLL_STATUSES})", name="status"),
        sa.CheckConstraint("trigger IN ('schedule', 'operator')", name="trigger"),
        sa.CheckConstraint(
            "line_count >= 0 AND total_amount_minor >= 0 AND budget_minor >= 0", name="totals"
        ),
    )
    op.create_index(
        "uq_payrolls_live_cycle",
        "payrolls",
        ["programme_id", "cycle_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'REJECTED'"),
    )
    op.create_index(
        "ix_payrolls_generating",
        "payrolls",
        ["created_at"],
        postgresql_where=sa.text("status = 'GENERATING'"),
    )
    op.create_index("ix_payrolls_cycle_id", "payrolls", ["cycle_id"])
    op.create_table(
        "payroll_locations",
        sa.Column(
            "payroll_id",
            UUID(as_uuid=True),
            sa.ForeignKey(
                "payrolls.id", name="fk_payroll_locations_payroll_id_payrolls", ondelete="CASCADE"
            ),
            primary_key=True,
        ),
        sa.Column("location_code", sa.Text, primary_key=True),
        *_bigint("eligible", "on_payroll", "amount_minor"),
        sa.Column("exclusions", JSONB, nullable=False),
    )
    op.create_table(
        "payroll_lines",
        sa.Column("payroll_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("line_id", UUID(as_uuid=True), primary_key=True),
        *_uuid("household_id"),
        *_text("household_number", "location_code"),
        *_uuid("recipient_member_id"),
        *_text(
            "recipient_given_name", "recipient_family_name", "recipient_sex", "recipient_age_band"
        ),
        *_text(
            "recipient_identifier_scheme",
            "recipient_identifier_value",
            "recipient_phone",
            nullable=True,
        ),
        *_uuid("provider_id"),
        *_text("mechanism"),
        *_uuid("pay_point_id", nullable=True),
        *_text(
            "account_kind",
            "account_value",
            "account_bank_code",
            "account_holder_name",
            nullable=True,
        ),
        *_bigint("amount_minor"),
        *_uuid("carried_over_payment_id", nullable=True),
        sa.CheckConstraint("amount_minor > 0", name="amount"),
    )
    op.create_index(
        "uq_payroll_lines_household",
        "payroll_lines",
        ["payroll_id", "household_id"],
        unique=True,
        postgresql_where=sa.text("carried_over_payment_id IS NULL"),
    )
    op.create_table(
        "payroll_progress",
        sa.Column("payroll_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("phase", sa.String(20), nullable=False),
        *_bigint("rows_done", "rows_total"),
        sa.Column("attempts", sa.Integer, nullable=False),
        *_moment("started_at", "updated_at"),
    )


def downgrade() -> None:
    for table in (
        "payroll_progress",
        "payroll_lines",
        "payroll_locations",
        "payrolls",
        "cycles",
        "rule_versions",
        "programmes",
        "carry_overs",
        "provider_pay_points",
        "providers",
        "households",
    ):
        op.drop_table(table)
    op.execute("DROP FUNCTION uuid7()")
    unpark_outbox_rows()
    drop_infrastructure_tables()
