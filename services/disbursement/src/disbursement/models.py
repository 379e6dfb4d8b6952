"""Disbursement tables.

A payroll arrives as PayrollApproved chunks, staged one row per chunk (its lines as JSON) until
every chunk is in; the release then turns the staged lines into payments and batches in two
INSERT ... SELECT statements and drops the stage. Payments carry what a provider needs to pay
(personal data) and their outcome; exceptions keep every anomalous result for review.
Providers are a projection of `provider.events`; channel secrets are sealed (AES-256-GCM).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from amana_common.db import new_metadata

OPEN_STATUSES = "status IN ('pending', 'sent')"


class Base(DeclarativeBase):
    metadata = new_metadata()


def _json() -> JSONB:
    return JSONB(none_as_null=True)


class Provider(Base):
    """What disbursement knows of a provider, from its snapshots (newest version wins)."""

    __tablename__ = "providers"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(10))
    currencies: Mapped[list[str]] = mapped_column(ARRAY(String(3)))
    delivery_mode: Mapped[str] = mapped_column(String(4))
    base_url: Mapped[str | None] = mapped_column(String(2048))
    file_profile: Mapped[dict[str, Any] | None] = mapped_column(_json())
    fee_currency: Mapped[str] = mapped_column(String(3))
    fee_fixed_minor: Mapped[int] = mapped_column(BigInteger)
    fee_basis_points: Mapped[int] = mapped_column(Integer)
    pay_point_codes: Mapped[dict[str, str]] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProviderChannel(Base):
    """The credential Amana presents to a provider's API, sealed."""

    __tablename__ = "provider_channels"

    provider_id: Mapped[UUID] = mapped_column(primary_key=True)
    api_credential: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str | None] = mapped_column(String(200))


class WebhookSecret(Base):
    """A provider's webhook signing secret, sealed. The current one has no `expires_at`; a
    rotated one verifies until its `expires_at`."""

    __tablename__ = "webhook_secrets"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    provider_id: Mapped[UUID] = mapped_column(index=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookMessage(Base):
    """Every verified webhook id, once: a replay is answered from here and applies nothing."""

    __tablename__ = "webhook_messages"
    __table_args__ = (PrimaryKeyConstraint("provider_id", "webhook_id"),)

    provider_id: Mapped[UUID]
    webhook_id: Mapped[str] = mapped_column(String(200))
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    answer: Mapped[dict[str, Any] | None] = mapped_column(_json())


class Payroll(Base):
    __tablename__ = "payrolls"
    __table_args__ = (
        CheckConstraint("status IN ('staging', 'held', 'released', 'reconciled')", name="status"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    programme_id: Mapped[UUID]
    programme_code: Mapped[str] = mapped_column(String(100))
    cycle_id: Mapped[UUID]
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    payment_window_start: Mapped[date] = mapped_column(Date)
    payment_window_end: Mapped[date] = mapped_column(Date)
    pay_by: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    approved_by: Mapped[str] = mapped_column(String(200))
    line_count: Mapped[int] = mapped_column(Integer)
    total_amount_minor: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(Integer)
    header_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), index=True)
    hold_reason: Mapped[str | None] = mapped_column(String(500))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reconciled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PayrollChunk(Base):
    """One staged PayrollApproved chunk: its lines as the event carried them."""

    __tablename__ = "payroll_chunks"
    __table_args__ = (PrimaryKeyConstraint("payroll_id", "chunk_index"),)

    payroll_id: Mapped[UUID] = mapped_column(ForeignKey("payrolls.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    line_count: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("payroll_id", "provider_id", "sequence", name="uq_batches_payroll_id"),
        CheckConstraint("status IN ('ready', 'sent', 'stalled')", name="status"),
        Index("ix_batches_due", "next_attempt_at", postgresql_where=text("status = 'ready'")),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    payroll_id: Mapped[UUID] = mapped_column(ForeignKey("payrolls.id"))
    provider_id: Mapped[UUID] = mapped_column(index=True)
    currency: Mapped[str] = mapped_column(String(3))
    sequence: Mapped[int] = mapped_column(Integer)
    payment_count: Mapped[int] = mapped_column(Integer)
    total_amount_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    downloaded_by: Mapped[str | None] = mapped_column(String(200))
    downloaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, server_default="1")


class ProviderBreaker(Base):
    """The dispatch circuit breaker of one provider (domain.Breaker), shared by workers."""

    __tablename__ = "provider_breakers"

    provider_id: Mapped[UUID] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(10))
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'sent', 'settled', 'failed', 'expired', 'reversed')",
            name="status",
        ),
        CheckConstraint("amount_minor > 0 AND fee_minor >= 0", name="amounts"),
        Index("ix_payments_payroll_id_status", "payroll_id", "status"),
        Index("ix_payments_open_pay_by", "pay_by", postgresql_where=text(OPEN_STATUSES)),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(13), unique=True)
    payroll_id: Mapped[UUID] = mapped_column(ForeignKey("payrolls.id"))
    payroll_line_id: Mapped[UUID] = mapped_column(unique=True)
    programme_id: Mapped[UUID]
    cycle_id: Mapped[UUID]
    household_id: Mapped[UUID]
    household_number: Mapped[str] = mapped_column(String(32))
    location_code: Mapped[str] = mapped_column(String(50))
    recipient_member_id: Mapped[UUID]
    recipient_given_name: Mapped[str] = mapped_column(String(200))
    recipient_family_name: Mapped[str] = mapped_column(String(200))
    recipient_sex: Mapped[str] = mapped_column(String(10))
    recipient_age_band: Mapped[str] = mapped_column(String(8))
    recipient_identifier: Mapped[dict[str, Any] | None] = mapped_column(_json())
    recipient_phone: Mapped[str | None] = mapped_column(String(20))
    provider_id: Mapped[UUID]
    mechanism: Mapped[str] = mapped_column(String(20))
    pay_point_id: Mapped[UUID | None]
    account: Mapped[dict[str, Any] | None] = mapped_column(_json())
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    carried_over_payment_id: Mapped[UUID | None]
    batch_id: Mapped[UUID] = mapped_column(ForeignKey("batches.id"), index=True)
    status: Mapped[str] = mapped_column(String(10))
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    pay_by: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    provider_reference: Mapped[str | None] = mapped_column(String(100))
    reason_code: Mapped[str | None] = mapped_column(String(8))
    fee_minor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reversed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, server_default="1")


class ReconciliationException(Base):
    """A provider's result that could not be applied as it came: kept for a person to review."""

    __tablename__ = "reconciliation_exceptions"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    provider_id: Mapped[UUID] = mapped_column(index=True)
    payroll_id: Mapped[UUID | None] = mapped_column(index=True)
    payment_id: Mapped[UUID | None]
    payment_number: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(30))
    detail: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(10))
    source_id: Mapped[str] = mapped_column(String(200))
    result_status: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    provider_reference: Mapped[str] = mapped_column(String(100))
    reason_code: Mapped[str | None] = mapped_column(String(35))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Statement(Base):
    __tablename__ = "statements"
    __table_args__ = (
        UniqueConstraint("provider_id", "content_sha256", name="uq_statements_provider_id"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    provider_id: Mapped[UUID]
    format: Mapped[str] = mapped_column(String(10))
    content_sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(200))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    line_count: Mapped[int] = mapped_column(Integer)
    applied: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    exceptions: Mapped[int] = mapped_column(Integer)
