"""Analytics tables: reporting tables without personal data, and the DHIS2 push log.

Facts hold one row per aggregate of another service (a household, a payment, a payroll, a
duplicate flag), keyed by the aggregate id or, for those about people, by a keyed hash of it
(`*_key`, 16 bytes of HMAC-SHA256): they hold what a newer event must replace and nothing that
names or identifies a person. Totals are pre-aggregated counts kept in step with the facts in
the same transaction, so a report never scans a million payments.

No column holds a name, an identifier, a phone or account number, a date of birth or a human
reference (household or payment number): `tests/test_no_personal_data.py` checks every column
against an allow-list and the rows after ingesting events full of personal data.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from amana_common.db import new_metadata

CODE = 100
LOCATION = 50
SHORT = 20
REASON = 35
KEY_BYTES = 16


class Base(DeclarativeBase):
    metadata = new_metadata()


class Programme(Base):
    __tablename__ = "programmes"

    programme_id: Mapped[UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(SHORT))
    payment_window_days: Mapped[int] = mapped_column(Integer)
    budget_per_cycle_minor: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(Integer)


class Provider(Base):
    __tablename__ = "providers"

    provider_id: Mapped[UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE))
    status: Mapped[str] = mapped_column(String(SHORT))
    version: Mapped[int] = mapped_column(Integer)


class Payroll(Base):
    """A payroll as its events describe it; its status follows from which times are set."""

    __tablename__ = "payrolls"

    payroll_id: Mapped[UUID] = mapped_column(primary_key=True)
    programme_id: Mapped[UUID] = mapped_column(index=True)
    cycle_id: Mapped[UUID] = mapped_column(index=True)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    window_start: Mapped[date | None] = mapped_column(Date)
    window_end: Mapped[date | None] = mapped_column(Date)
    line_count: Mapped[int | None] = mapped_column(Integer)
    total_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    budget_minor: Mapped[int | None] = mapped_column(BigInteger)
    eligible_count: Mapped[int | None] = mapped_column(Integer)
    generated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rejected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PayrollReconciliation(Base):
    """PayrollReconciled: nothing of the payroll is pending any more (its own table, as it may
    be read before the payroll's own events: topics are not ordered among themselves)."""

    __tablename__ = "payroll_reconciliations"

    payroll_id: Mapped[UUID] = mapped_column(primary_key=True)
    reconciled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    line_count: Mapped[int] = mapped_column(Integer)
    total_amount_minor: Mapped[int] = mapped_column(BigInteger)
    fees_minor: Mapped[int] = mapped_column(BigInteger)
    exceptions_open: Mapped[int] = mapped_column(Integer)


class PayrollExclusion(Base):
    __tablename__ = "payroll_exclusions"

    payroll_id: Mapped[UUID] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(String(REASON), primary_key=True)
    households: Mapped[int] = mapped_column(Integer)


class PayrollLocation(Base):
    """PayrollGenerated's count per location: eligible, on the payroll, amount."""

    __tablename__ = "payroll_locations"

    payroll_id: Mapped[UUID] = mapped_column(primary_key=True)
    location_code: Mapped[str] = mapped_column(String(LOCATION), primary_key=True)
    eligible: Mapped[int] = mapped_column(Integer)
    on_payroll: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class PayrollChunk(Base):
    """The PayrollApproved chunks already counted into payroll_line_totals."""

    __tablename__ = "payroll_chunks"

    payroll_id: Mapped[UUID] = mapped_column(primary_key=True)
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True)


class PayrollLineTotal(Base):
    """Approved payroll lines counted by where and through whom they are paid, and to whom
    (sex and age band of the recipient), never who."""

    __tablename__ = "payroll_line_totals"

    payroll_id: Mapped[UUID] = mapped_column(primary_key=True)
    location_code: Mapped[str] = mapped_column(String(LOCATION), primary_key=True)
    provider_id: Mapped[UUID] = mapped_column(primary_key=True)
    mechanism: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    sex: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    age_band: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    programme_id: Mapped[UUID] = mapped_column()
    cycle_id: Mapped[UUID] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    lines: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class PaymentFact(Base):
    """A payment's current outcome (settled, failed, expired or reversed)."""

    __tablename__ = "payment_facts"
    __table_args__ = (Index("ix_payment_facts_cycle_outcome", "cycle_id", "outcome"),)

    payment_key: Mapped[bytes] = mapped_column(LargeBinary(KEY_BYTES), primary_key=True)
    payroll_id: Mapped[UUID] = mapped_column()
    programme_id: Mapped[UUID] = mapped_column()
    cycle_id: Mapped[UUID] = mapped_column()
    location_code: Mapped[str] = mapped_column(String(LOCATION))
    provider_id: Mapped[UUID] = mapped_column()
    mechanism: Mapped[str] = mapped_column(String(SHORT))
    sex: Mapped[str] = mapped_column(String(SHORT))
    age_band: Mapped[str] = mapped_column(String(SHORT))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(SHORT))
    reason_code: Mapped[str] = mapped_column(String(REASON))
    outcome_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rank: Mapped[int] = mapped_column(SmallInteger)


class PaymentTotal(Base):
    """Payments and amounts per outcome, by every reporting dimension."""

    __tablename__ = "payment_totals"

    programme_id: Mapped[UUID] = mapped_column(primary_key=True)
    cycle_id: Mapped[UUID] = mapped_column(primary_key=True)
    payroll_id: Mapped[UUID] = mapped_column(primary_key=True)
    location_code: Mapped[str] = mapped_column(String(LOCATION), primary_key=True)
    provider_id: Mapped[UUID] = mapped_column(primary_key=True)
    mechanism: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    sex: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    age_band: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    reason_code: Mapped[str] = mapped_column(String(REASON), primary_key=True)
    payments: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger)


class HouseholdFact(Base):
    """A household's latest version as reporting needs it: where, status, enrolment date, the
    head's sex and age band, and its members counted by sex and age band."""

    __tablename__ = "household_facts"

    household_key: Mapped[bytes] = mapped_column(LargeBinary(KEY_BYTES), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    location_code: Mapped[str] = mapped_column(String(LOCATION))
    status: Mapped[str] = mapped_column(String(SHORT))
    enrolled_on: Mapped[date] = mapped_column(Date)
    head_sex: Mapped[str] = mapped_column(String(SHORT))
    head_age_band: Mapped[str] = mapped_column(String(SHORT))
    composition: Mapped[dict[str, int]] = mapped_column(JSONB)


class HouseholdTotal(Base):
    __tablename__ = "household_totals"

    location_code: Mapped[str] = mapped_column(String(LOCATION), primary_key=True)
    enrolled_on: Mapped[date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    head_sex: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    head_age_band: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    households: Mapped[int] = mapped_column(Integer)
    members: Mapped[int] = mapped_column(Integer)


class MemberTotal(Base):
    __tablename__ = "member_totals"

    location_code: Mapped[str] = mapped_column(String(LOCATION), primary_key=True)
    enrolled_on: Mapped[date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    sex: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    age_band: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    members: Mapped[int] = mapped_column(Integer)


class DuplicateFlag(Base):
    """A duplicate flag: where, when flagged, when and how decided (never by whom)."""

    __tablename__ = "duplicate_flags"

    flag_key: Mapped[bytes] = mapped_column(LargeBinary(KEY_BYTES), primary_key=True)
    location_code: Mapped[str] = mapped_column(String(LOCATION))
    score: Mapped[float] = mapped_column(Float)
    flagged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision: Mapped[str | None] = mapped_column(String(SHORT))


class Dhis2Push(Base):
    """One push of a report to DHIS2 and the import summary DHIS2 answered. Not a reporting
    table: a rebuild keeps it."""

    __tablename__ = "dhis2_pushes"

    push_id: Mapped[UUID] = mapped_column(primary_key=True)
    report: Mapped[str] = mapped_column(String(SHORT))
    filters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    target: Mapped[str] = mapped_column(String(2048))
    data_values: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(SHORT))
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    imported: Mapped[int] = mapped_column(Integer)
    updated: Mapped[int] = mapped_column(Integer)
    ignored: Mapped[int] = mapped_column(Integer)
    deleted: Mapped[int] = mapped_column(Integer)
    conflicts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


REPORTING_TABLES: tuple[str, ...] = (
    "programmes",
    "providers",
    "payrolls",
    "payroll_reconciliations",
    "payroll_exclusions",
    "payroll_locations",
    "payroll_chunks",
    "payroll_line_totals",
    "payment_facts",
    "payment_totals",
    "household_facts",
    "household_totals",
    "member_totals",
    "duplicate_flags",
)
"""What a rebuild empties (everything the events fill)."""
