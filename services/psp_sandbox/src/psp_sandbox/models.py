"""Sandbox tables. Everything the worker does later is a row first, so a process killed at any
moment loses no accepted batch and sends no result twice by accident:

- `sandbox_providers`: the simulated provider accounts (API key as a SHA-256 hash);
- `batches` and `payments`: what Amana sent, with each payment's outcome decided at
  acceptance and the time its result falls due; a payment number is unique per provider, so
  the same payment can never be accepted (and paid) twice;
- `deliveries`: the signed webhooks to send, genuine or injected by a fault, with what Amana
  is expected to answer and the verdict on what it answered; `delivery_attempts` each try;
- `faults` and `fault_injections`: the faults asked for, and each time one was applied.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from amana_common.db import new_metadata
from amana_common.value_sets import one_of
from psp_sandbox.domain import DeliveryStatus, FaultKind, ResultStatus, Verdict

FAULT_KINDS = tuple(kind.value for kind in FaultKind)

NUMBER_LENGTH = 64
WEBHOOK_ID_LENGTH = 64
KIND_LENGTH = 30


class Base(DeclarativeBase):
    metadata = new_metadata()


class SandboxProvider(Base):
    __tablename__ = "sandbox_providers"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    webhook_url: Mapped[str] = mapped_column(String(2048))
    webhook_secret: Mapped[str] = mapped_column(String(200))
    settle_delay_s: Mapped[float] = mapped_column(Double)
    failure_rate: Mapped[float] = mapped_column(Double)
    reason_mix: Mapped[dict[str, int]] = mapped_column(JSONB)
    results_per_webhook: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("sandbox_providers.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    payment_count: Mapped[int] = mapped_column(Integer)
    total_amount_minor: Mapped[int] = mapped_column(BigInteger)
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(one_of("outcome", ResultStatus), name="outcome"),
        UniqueConstraint("provider_id", "payment_number"),
        Index(
            "ix_payments_due",
            "result_due_at",
            postgresql_where=text("delivery_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    batch_id: Mapped[UUID] = mapped_column(ForeignKey("batches.id"), index=True)
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("sandbox_providers.id"))
    payment_number: Mapped[str] = mapped_column(String(NUMBER_LENGTH))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    mechanism: Mapped[str] = mapped_column(String(20))
    pay_by: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(10))
    reason_code: Mapped[str | None] = mapped_column(String(35))
    provider_reference: Mapped[str] = mapped_column(String(100))
    result_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    late: Mapped[bool] = mapped_column(server_default=text("false"))
    delivery_id: Mapped[UUID | None] = mapped_column(ForeignKey("deliveries.id"), index=True)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint(one_of("status", DeliveryStatus), name="status"),
        CheckConstraint(one_of("verdict", Verdict), name="verdict"),
        # A genuine webhook id is used once; a fault's extra may reuse it (that is the fault).
        Index(
            "uq_deliveries_genuine_webhook_id",
            "webhook_id",
            unique=True,
            postgresql_where=text("kind = 'results'"),
        ),
        Index(
            "ix_deliveries_pending",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_deliveries_faults", "faults", postgresql_using="gin"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("sandbox_providers.id"), index=True)
    webhook_id: Mapped[str] = mapped_column(String(WEBHOOK_ID_LENGTH))
    kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    fault_id: Mapped[UUID | None] = mapped_column(ForeignKey("faults.id"), index=True)
    faults: Mapped[list[str]] = mapped_column(ARRAY(String(KIND_LENGTH)))
    # Up to 5,000 results each: read only for one delivery, never for a list.
    body: Mapped[bytes] = mapped_column(LargeBinary, deferred=True, deferred_raiseload=True)
    payment_numbers: Mapped[list[str]] = mapped_column(
        ARRAY(String(NUMBER_LENGTH)), deferred=True, deferred_raiseload=True
    )
    result_count: Mapped[int] = mapped_column(Integer)
    signing: Mapped[dict[str, Any]] = mapped_column(JSONB)
    depends_on: Mapped[list[UUID]] = mapped_column(ARRAY(PG_UUID(as_uuid=True)))
    expected: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_headers: Mapped[dict[str, str] | None] = mapped_column(JSONB(none_as_null=True))
    answer_summary: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    verdict: Mapped[str | None] = mapped_column(String(12))
    verdict_detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    delivery_id: Mapped[UUID] = mapped_column(ForeignKey("deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)


class Fault(Base):
    __tablename__ = "faults"
    __table_args__ = (
        CheckConstraint(one_of("kind", FAULT_KINDS), name="kind"),
        Index("ix_faults_in_force", "provider_id", postgresql_where=text("cleared_at IS NULL")),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    provider_id: Mapped[UUID | None] = mapped_column(ForeignKey("sandbox_providers.id"))
    kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    max_count: Mapped[int | None] = mapped_column(Integer)
    active_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seed: Mapped[int] = mapped_column(BigInteger)
    seen: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    applied: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FaultInjection(Base):
    __tablename__ = "fault_injections"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    fault_id: Mapped[UUID] = mapped_column(ForeignKey("faults.id"), index=True)
    kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    provider_id: Mapped[UUID | None] = mapped_column(ForeignKey("sandbox_providers.id"))
    batch_id: Mapped[UUID | None] = mapped_column(ForeignKey("batches.id"))
    payment_number: Mapped[str | None] = mapped_column(String(NUMBER_LENGTH))
    delivery_id: Mapped[UUID | None] = mapped_column(ForeignKey("deliveries.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB)
    injected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
