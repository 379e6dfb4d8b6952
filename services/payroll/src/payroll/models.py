"""Payroll tables.

Projections, kept from other services' events (a snapshot replaces what is held only when its
`version` is higher, so replays change nothing):
- `households`: what eligibility, amounts and payment need. Members are two sorted arrays,
  their dates of birth and their keys (category and date of birth, `domain.member_key`), so
  that counting members of a category born in a range is two binary searches
  (`width_bucket`) on the household's own row: no members table, no unnest.
- `providers` and `provider_pay_points`: status, currencies, mechanisms, pay points.
- `carry_overs`: retryable failed payments (PaymentFailed) waiting for the next payroll.

Owned here: `programmes`, their `rule_versions`, `cycles`, `payrolls` with their
`payroll_lines` (each a snapshot of who is paid, how and how much), per-location counts, and
`payroll_progress`, written by the generating worker from a second connection while its own
transaction runs.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from amana_common.db import new_metadata
from amana_common.value_sets import one_of
from amana_contracts.payroll import FrequencyUnit, ProgrammeStatus
from payroll.domain import PayrollStatus

CODE_LENGTH = 32
NAME_LENGTH = 200
SUBJECT_LENGTH = 200
REASON_LENGTH = 500

PAYROLL_STATUSES = tuple(status.value for status in PayrollStatus)
Trigger = Literal["schedule", "operator"]


class Base(DeclarativeBase):
    metadata = new_metadata()


# --- projections --------------------------------------------------------------------------


class HouseholdProjection(Base):
    __tablename__ = "households"

    household_id: Mapped[UUID] = mapped_column(primary_key=True)
    household_number: Mapped[str] = mapped_column(Text)
    location_code: Mapped[str] = mapped_column(Text)
    location_ancestors: Mapped[list[str]] = mapped_column(ARRAY(Text))
    status: Mapped[str] = mapped_column(Text)
    duplicate_review_open: Mapped[bool] = mapped_column(Boolean)
    size: Mapped[int] = mapped_column(Integer)
    member_birth_dates: Mapped[list[date]] = mapped_column(ARRAY(Date))
    member_keys: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    eligibility_attributes: Mapped[dict[str, Any]] = mapped_column(JSONB)
    recipient_member_id: Mapped[UUID | None]
    recipient_given_name: Mapped[str | None] = mapped_column(Text)
    recipient_family_name: Mapped[str | None] = mapped_column(Text)
    recipient_sex: Mapped[str | None] = mapped_column(Text)
    recipient_date_of_birth: Mapped[date | None] = mapped_column(Date)
    recipient_identifier_scheme: Mapped[str | None] = mapped_column(Text)
    recipient_identifier_value: Mapped[str | None] = mapped_column(Text)
    recipient_phone: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[UUID | None]
    mechanism: Mapped[str | None] = mapped_column(Text)
    pay_point_id: Mapped[UUID | None]
    account_kind: Mapped[str | None] = mapped_column(Text)
    account_value: Mapped[str | None] = mapped_column(Text)
    account_bank_code: Mapped[str | None] = mapped_column(Text)
    account_holder_name: Mapped[str | None] = mapped_column(Text)
    payable: Mapped[bool] = mapped_column(Boolean)
    not_payable_reasons: Mapped[list[str]] = mapped_column(ARRAY(Text))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    projected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProviderProjection(Base):
    __tablename__ = "providers"

    provider_id: Mapped[UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    currencies: Mapped[list[str]] = mapped_column(ARRAY(Text))
    mechanisms: Mapped[list[str]] = mapped_column(ARRAY(Text))
    version: Mapped[int] = mapped_column(Integer)
    projected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PayPointProjection(Base):
    __tablename__ = "provider_pay_points"

    pay_point_id: Mapped[UUID] = mapped_column(primary_key=True)
    provider_id: Mapped[UUID] = mapped_column(
        ForeignKey("providers.provider_id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(Text)


class CarryOver(Base):
    """A retryable failed payment, carried into the programme's next payroll once."""

    __tablename__ = "carry_overs"
    __table_args__ = (
        Index(
            "ix_carry_overs_waiting",
            "programme_id",
            postgresql_where=text("carried_into_payroll_id IS NULL"),
        ),
        CheckConstraint("amount_minor > 0", name="amount"),
    )

    payment_id: Mapped[UUID] = mapped_column(primary_key=True)
    programme_id: Mapped[UUID]
    cycle_id: Mapped[UUID]
    payroll_line_id: Mapped[UUID]
    household_id: Mapped[UUID]
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    reason_code: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    carried_into_payroll_id: Mapped[UUID | None]
    outcome: Mapped[str | None] = mapped_column(String(30))


# --- programmes -----------------------------------------------------------------------


class Programme(Base):
    __tablename__ = "programmes"
    __table_args__ = (
        CheckConstraint(one_of("status", ProgrammeStatus), name="status"),
        CheckConstraint(one_of("frequency_unit", FrequencyUnit), name="frequency_unit"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates"),
        CheckConstraint(
            "every_n_months BETWEEN 1 AND 12 AND payment_day BETWEEN 1 AND 28 "
            "AND payment_window_days BETWEEN 1 AND 90 AND generation_lead_days BETWEEN 0 AND 60",
            name="frequency",
        ),
        CheckConstraint("budget_per_cycle_minor >= 0", name="budget"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE_LENGTH), unique=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    description: Mapped[str | None] = mapped_column(String(2000))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10))
    status_reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    frequency_unit: Mapped[str] = mapped_column(String(20))
    every_n_months: Mapped[int] = mapped_column(SmallInteger)
    payment_day: Mapped[int] = mapped_column(SmallInteger)
    payment_window_days: Mapped[int] = mapped_column(SmallInteger)
    generation_lead_days: Mapped[int] = mapped_column(SmallInteger)
    budget_per_cycle_minor: Mapped[int] = mapped_column(BigInteger)
    carry_over: Mapped[bool] = mapped_column(Boolean)
    rules_version: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    updated_by: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    @property
    def frequency(self) -> dict[str, Any]:
        return {
            "unit": self.frequency_unit,
            "every_n_months": self.every_n_months,
            "payment_day": self.payment_day,
            "payment_window_days": self.payment_window_days,
        }


class RuleVersion(Base):
    """One version of a programme's eligibility rules, benefit formula and budget priority;
    never changed once written."""

    __tablename__ = "rule_versions"

    programme_id: Mapped[UUID] = mapped_column(ForeignKey("programmes.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    eligibility: Mapped[dict[str, Any]] = mapped_column(JSONB)
    formula: Mapped[dict[str, Any]] = mapped_column(JSONB)
    budget_priority: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    note: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    created_by: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Cycle(Base):
    __tablename__ = "cycles"
    __table_args__ = (UniqueConstraint("programme_id", "sequence"),)

    id: Mapped[UUID] = mapped_column(primary_key=True)
    programme_id: Mapped[UUID] = mapped_column(ForeignKey("programmes.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    payment_date: Mapped[date] = mapped_column(Date)
    window_end: Mapped[date] = mapped_column(Date)
    generate_on: Mapped[date] = mapped_column(Date, index=True)


# --- payrolls -------------------------------------------------------------------------


class Payroll(Base):
    __tablename__ = "payrolls"
    __table_args__ = (
        # Exactly one live payroll per programme and cycle, whoever creates it and however
        # many workers race: a rejected one may be followed by a new one.
        Index(
            "uq_payrolls_live_cycle",
            "programme_id",
            "cycle_id",
            unique=True,
            postgresql_where=text("status <> 'REJECTED'"),
        ),
        Index(
            "ix_payrolls_generating", "created_at", postgresql_where=text("status = 'GENERATING'")
        ),
        CheckConstraint(one_of("status", PAYROLL_STATUSES), name="status"),
        CheckConstraint(one_of("trigger", Trigger), name="trigger"),
        CheckConstraint(
            "line_count >= 0 AND total_amount_minor >= 0 AND budget_minor >= 0", name="totals"
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    programme_id: Mapped[UUID] = mapped_column(ForeignKey("programmes.id"))
    cycle_id: Mapped[UUID] = mapped_column(ForeignKey("cycles.id"), index=True)
    rules_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    budget_minor: Mapped[int] = mapped_column(BigInteger)
    eligible_count: Mapped[int] = mapped_column(BigInteger)
    line_count: Mapped[int] = mapped_column(BigInteger)
    carried_over_count: Mapped[int] = mapped_column(BigInteger)
    total_amount_minor: Mapped[int] = mapped_column(BigInteger)
    exclusions: Mapped[dict[str, int]] = mapped_column(JSONB)
    trigger: Mapped[str] = mapped_column(String(10))
    generated_by: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    changed_by: Mapped[str | None] = mapped_column(String(SUBJECT_LENGTH))
    decided_by: Mapped[str | None] = mapped_column(String(SUBJECT_LENGTH))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rejection_reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    failure: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    generated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)


class PayrollLocation(Base):
    """Per location: households meeting the rules, on the payroll, their amount, and the
    eligible households left out by reason."""

    __tablename__ = "payroll_locations"

    payroll_id: Mapped[UUID] = mapped_column(
        ForeignKey("payrolls.id", ondelete="CASCADE"), primary_key=True
    )
    location_code: Mapped[str] = mapped_column(Text, primary_key=True)
    eligible: Mapped[int] = mapped_column(BigInteger)
    on_payroll: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    exclusions: Mapped[dict[str, int]] = mapped_column(JSONB)


class PayrollLine(Base):
    """Who is paid, through what and how much: a snapshot taken at generation, never changed.
    No foreign key to payrolls: a line is only ever written by its payroll's generation, in
    bulk, and a per-row key check would cost as much as the rest of the insert."""

    __tablename__ = "payroll_lines"
    __table_args__ = (
        Index(
            "uq_payroll_lines_household",
            "payroll_id",
            "household_id",
            unique=True,
            postgresql_where=text("carried_over_payment_id IS NULL"),
        ),
        CheckConstraint("amount_minor > 0", name="amount"),
    )

    payroll_id: Mapped[UUID] = mapped_column(primary_key=True)
    line_id: Mapped[UUID] = mapped_column(primary_key=True)
    household_id: Mapped[UUID]
    household_number: Mapped[str] = mapped_column(Text)
    location_code: Mapped[str] = mapped_column(Text)
    recipient_member_id: Mapped[UUID]
    recipient_given_name: Mapped[str] = mapped_column(Text)
    recipient_family_name: Mapped[str] = mapped_column(Text)
    recipient_sex: Mapped[str] = mapped_column(Text)
    recipient_age_band: Mapped[str] = mapped_column(Text)
    recipient_identifier_scheme: Mapped[str | None] = mapped_column(Text)
    recipient_identifier_value: Mapped[str | None] = mapped_column(Text)
    recipient_phone: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[UUID]
    mechanism: Mapped[str] = mapped_column(Text)
    pay_point_id: Mapped[UUID | None]
    account_kind: Mapped[str | None] = mapped_column(Text)
    account_value: Mapped[str | None] = mapped_column(Text)
    account_bank_code: Mapped[str | None] = mapped_column(Text)
    account_holder_name: Mapped[str | None] = mapped_column(Text)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    carried_over_payment_id: Mapped[UUID | None]


class PayrollProgress(Base):
    """How far a generation got; written from a second connection, so it is visible while the
    generating transaction runs (no foreign key: that would wait on the payroll's row lock)."""

    __tablename__ = "payroll_progress"

    payroll_id: Mapped[UUID] = mapped_column(primary_key=True)
    phase: Mapped[str] = mapped_column(String(20))
    rows_done: Mapped[int] = mapped_column(BigInteger)
    rows_total: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
