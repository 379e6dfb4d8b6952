"""Reporting tables (facts and totals, no personal data) and the DHIS2 push log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CODE = 100
LOCATION = 50
SHORT = 20
REASON = 35
KEY = 16


def _uuid(name: str, **kwargs: object) -> sa.Column[object]:
    return sa.Column(name, UUID(as_uuid=True), nullable=False, **kwargs)  # type: ignore[arg-type]


def _text(name: str, length: int, **kwargs: object) -> sa.Column[object]:
    return sa.Column(name, sa.String(length), nullable=False, **kwargs)  # type: ignore[arg-type]


def _int(name: str, kind: type[sa.types.TypeEngine[int]] = sa.Integer) -> sa.Column[object]:
    return sa.Column(name, kind(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "programmes",
        _uuid("programme_id", primary_key=True),
        _text("code", CODE),
        _text("currency", 3),
        _text("status", SHORT),
        _int("payment_window_days"),
        _int("budget_per_cycle_minor", sa.BigInteger),
        _int("version"),
    )
    op.create_table(
        "providers",
        _uuid("provider_id", primary_key=True),
        _text("code", CODE),
        _text("status", SHORT),
        _int("version"),
    )
    op.create_table(
        "payrolls",
        _uuid("payroll_id", primary_key=True),
        _uuid("programme_id"),
        _uuid("cycle_id"),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        _text("currency", 3),
        sa.Column("window_start", sa.Date),
        sa.Column("window_end", sa.Date),
        sa.Column("line_count", sa.Integer),
        sa.Column("total_amount_minor", sa.BigInteger),
        sa.Column("budget_minor", sa.BigInteger),
        sa.Column("eligible_count", sa.Integer),
        sa.Column("generated_at", sa.DateTime(timezone=True)),
        sa.Column("approved_at", sa.DateTime(timezone=True)),
        sa.Column("rejected_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_payrolls_programme_id", "payrolls", ["programme_id"])
    op.create_index("ix_payrolls_cycle_id", "payrolls", ["cycle_id"])
    op.create_table(
        "payroll_reconciliations",
        _uuid("payroll_id", primary_key=True),
        sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=False),
        _int("line_count"),
        _int("total_amount_minor", sa.BigInteger),
        _int("fees_minor", sa.BigInteger),
        _int("exceptions_open"),
    )
    op.create_table(
        "payroll_exclusions",
        _uuid("payroll_id", primary_key=True),
        _text("reason", REASON, primary_key=True),
        _int("households"),
    )
    op.create_table(
        "payroll_locations",
        _uuid("payroll_id", primary_key=True),
        _text("location_code", LOCATION, primary_key=True),
        _int("eligible"),
        _int("on_payroll"),
        _int("amount_minor", sa.BigInteger),
    )
    op.create_table(
        "payroll_chunks",
        _uuid("payroll_id", primary_key=True),
        sa.Column("chunk_index", sa.Integer, primary_key=True, nullable=False),
    )
    op.create_table(
        "payroll_line_totals",
        _uuid("payroll_id", primary_key=True),
        _text("location_code", LOCATION, primary_key=True),
        _uuid("provider_id", primary_key=True),
        _text("mechanism", SHORT, primary_key=True),
        _text("sex", SHORT, primary_key=True),
        _text("age_band", SHORT, primary_key=True),
        _uuid("programme_id"),
        _uuid("cycle_id"),
        _text("currency", 3),
        _int("lines"),
        _int("amount_minor", sa.BigInteger),
    )
    op.create_table(
        "payment_facts",
        sa.Column("payment_key", sa.LargeBinary(KEY), primary_key=True, nullable=False),
        _uuid("payroll_id"),
        _uuid("programme_id"),
        _uuid("cycle_id"),
        _text("location_code", LOCATION),
        _uuid("provider_id"),
        _text("mechanism", SHORT),
        _text("sex", SHORT),
        _text("age_band", SHORT),
        _text("currency", 3),
        _int("amount_minor", sa.BigInteger),
        _int("fee_minor", sa.BigInteger),
        _text("outcome", SHORT),
        _text("reason_code", REASON),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=False),
        _int("rank", sa.SmallInteger),
    )
    op.create_index("ix_payment_facts_cycle_outcome", "payment_facts", ["cycle_id", "outcome"])
    op.create_table(
        "payment_totals",
        _uuid("programme_id", primary_key=True),
        _uuid("cycle_id", primary_key=True),
        _uuid("payroll_id", primary_key=True),
        _text("location_code", LOCATION, primary_key=True),
        _uuid("provider_id", primary_key=True),
        _text("mechanism", SHORT, primary_key=True),
        _text("sex", SHORT, primary_key=True),
        _text("age_band", SHORT, primary_key=True),
        _text("currency", 3, primary_key=True),
        _text("outcome", SHORT, primary_key=True),
        _text("reason_code", REASON, primary_key=True),
        _int("payments", sa.BigInteger),
        _int("amount_minor", sa.BigInteger),
        _int("fee_minor", sa.BigInteger),
    )
    op.create_table(
        "household_facts",
        sa.Column("household_key", sa.LargeBinary(KEY), primary_key=True, nullable=False),
        _int("version"),
        _text("location_code", LOCATION),
        _text("status", SHORT),
        sa.Column("enrolled_on", sa.Date, nullable=False),
        _text("head_sex", SHORT),
        _text("head_age_band", SHORT),
        sa.Column("composition", JSONB, nullable=False),
    )
    op.create_table(
        "household_totals",
        _text("location_code", LOCATION, primary_key=True),
        sa.Column("enrolled_on", sa.Date, primary_key=True, nullable=False),
        _text("status", SHORT, primary_key=True),
        _text("head_sex", SHORT, primary_key=True),
        _text("head_age_band", SHORT, primary_key=True),
        _int("households"),
        _int("members"),
    )
    op.create_table(
        "member_totals",
        _text("location_code", LOCATION, primary_key=True),
        sa.Column("enrolled_on", sa.Date, primary_key=True, nullable=False),
        _text("status", SHORT, primary_key=True),
        _text("sex", SHORT, primary_key=True),
        _text("age_band", SHORT, primary_key=True),
        _int("members"),
    )
    op.create_table(
        "duplicate_flags",
        sa.Column("flag_key", sa.LargeBinary(KEY), primary_key=True, nullable=False),
        _text("location_code", LOCATION),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decision", sa.String(SHORT)),
    )
    op.create_table(
        "dhis2_pushes",
        _uuid("push_id", primary_key=True),
        _text("report", SHORT),
        sa.Column("filters", JSONB, nullable=False),
        _text("target", 2048),
        _int("data_values"),
        _text("status", SHORT),
        sa.Column("http_status", sa.SmallInteger),
        _int("imported"),
        _int("updated"),
        _int("ignored"),
        _int("deleted"),
        sa.Column("conflicts", JSONB, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "dhis2_pushes",
        "duplicate_flags",
        "member_totals",
        "household_totals",
        "household_facts",
        "payment_totals",
        "payment_facts",
        "payroll_line_totals",
        "payroll_chunks",
        "payroll_locations",
        "payroll_exclusions",
        "payroll_reconciliations",
        "payrolls",
        "providers",
        "programmes",
    ):
        op.drop_table(table)
