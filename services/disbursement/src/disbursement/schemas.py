"""Request and response bodies of the disbursement API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from amana_contracts.psp import ResultOutcome


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PaymentOut(_Out):
    """A payment, traced to its household and payroll (no names, identifiers or accounts)."""

    id: UUID
    number: str = Field(description="P + 10 digits + ISO 7064 Mod 97-10 check digits")
    payroll_id: UUID
    payroll_line_id: UUID
    programme_id: UUID
    cycle_id: UUID
    household_id: UUID
    household_number: str
    location_code: str
    recipient_member_id: UUID
    provider_id: UUID
    mechanism: str
    pay_point_id: UUID | None
    batch_id: UUID
    currency: str
    amount_minor: int
    status: str
    status_changed_at: datetime
    pay_by: datetime
    provider_reference: str | None
    reason_code: str | None
    fee_minor: int
    settled_at: datetime | None
    failed_at: datetime | None
    reversed_at: datetime | None
    carried_over_payment_id: UUID | None
    version: int


class BatchOut(_Out):
    id: UUID
    payroll_id: UUID
    provider_id: UUID
    currency: str
    sequence: int
    payment_count: int
    total_amount_minor: int
    status: Literal["ready", "sent", "stalled"]
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    sent_at: datetime | None
    downloaded_by: str | None
    downloaded_at: datetime | None
    version: int


class PayrollOut(_Out):
    id: UUID
    programme_id: UUID
    programme_code: str
    cycle_id: UUID
    currency: str
    period_start: date
    period_end: date
    payment_window_end: date
    pay_by: datetime
    line_count: int
    total_amount_minor: int
    chunk_count: int
    status: Literal["staging", "held", "released", "reconciled"]
    hold_reason: str | None
    released_at: datetime | None
    reconciled_at: datetime | None


class TotalsOut(BaseModel):
    count: int
    amount_minor: int


class ReconciliationOut(BaseModel):
    """settled + failed + expired + reversed + open (pending and sent) = payroll, always."""

    payroll: PayrollOut
    payroll_totals: TotalsOut
    settled: TotalsOut
    failed: TotalsOut
    expired: TotalsOut
    reversed: TotalsOut
    pending: TotalsOut = Field(description="Not yet sent")
    sent: TotalsOut = Field(description="With the provider, no result yet")
    open: TotalsOut = Field(description="pending + sent")
    balanced: bool = Field(description="The equality holds (it always should)")
    complete: bool = Field(description="Nothing is open: PayrollReconciled was published")
    fees_minor: int
    exceptions: int


class ExceptionOut(_Out):
    id: UUID
    provider_id: UUID
    payroll_id: UUID | None
    payment_id: UUID | None
    payment_number: str
    kind: str
    detail: str
    source: Literal["webhook", "statement"]
    source_id: str
    result_status: str
    amount_minor: int
    currency: str
    provider_reference: str
    reason_code: str | None
    occurred_at: datetime
    created_at: datetime


class StatementOut(_Out):
    id: UUID
    provider_id: UUID
    format: Literal["csv", "camt053"]
    uploaded_by: str
    uploaded_at: datetime
    line_count: int
    applied: int
    duplicates: int
    exceptions: int


class StatementReceiptOut(BaseModel):
    statement: StatementOut
    replayed: bool = Field(description="The same file was uploaded before: nothing applied")
    not_booked: int = Field(description="camt.053 entries not booked, not applied")
    exception_results: list[ResultOutcome] = Field(
        description="The results kept as exceptions (first 1,000); all in "
        "GET /reconciliation/exceptions"
    )


class ReasonCodeOut(BaseModel):
    code: str
    name: str
    description: str
    retryable: bool = Field(description="A later cycle may carry the payment over")
    source: Literal["iso20022", "amana"]


class WebhookSecretOut(_Out):
    id: UUID
    created_at: datetime
    expires_at: datetime | None = Field(description="None: the current secret")


class WebhookSecretCreated(WebhookSecretOut):
    secret: str = Field(description="whsec_...: shown this once, store it now")


class ApiCredentialIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: str = Field(
        min_length=16,
        max_length=4096,
        pattern=r"^[\x21-\x7e]+$",
        description="The bearer token Amana presents to the provider's API",
    )
