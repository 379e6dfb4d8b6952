"""Events published by the disbursement service on `disbursement.events`.

Each payment reaches exactly one terminal outcome: PaymentSettled, or PaymentFailed (a provider
failure with an ISO 20022 reason, or `expired` when the payment window closed). A reversal of a
settled payment is its own event. The payment id is the subject (per-payment order); the
payroll's events (PayrollReconciled) use the payroll id. No names, accounts or identifiers: the
payment number traces a payment to its household in the disbursement service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from amana_contracts.base import EventData
from amana_contracts.demographics import AgeBand
from amana_contracts.provider import Mechanism
from amana_contracts.registry import Sex

FailureOutcome = Literal["failed", "expired"]


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PaymentEventV1(EventData):
    """What every payment event carries: where the payment belongs, for reporting."""

    service = "disbursement"

    payment_id: UUID
    payment_number: str = Field(description="Human-readable, unique, with an ISO 7064 check")
    payroll_id: UUID
    payroll_line_id: UUID
    programme_id: UUID
    cycle_id: UUID
    household_id: UUID
    provider_id: UUID
    mechanism: Mechanism
    location_code: str
    recipient_sex: Sex
    recipient_age_band: AgeBand
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    amount_minor: int = Field(gt=0)

    def subject(self) -> str:
        return str(self.payment_id)


class PaymentSettledV1(PaymentEventV1):
    """The provider paid the recipient."""

    event_name = "PaymentSettled"

    provider_reference: str
    settled_at: datetime
    fee_minor: int = Field(default=0, ge=0)


class PaymentFailedV1(PaymentEventV1):
    """The payment ended unpaid: failed at the provider, or expired unpaid at the end of its
    payment window. `retryable` says whether the next cycle may carry it over."""

    event_name = "PaymentFailed"

    outcome: FailureOutcome
    reason_code: str = Field(description="ISO 20022 ExternalStatusReason or a documented code")
    retryable: bool
    failed_at: datetime


class PaymentReversedV1(PaymentEventV1):
    """A settled payment was reversed by the provider (e.g. returned funds)."""

    event_name = "PaymentReversed"

    reason_code: str
    reversed_at: datetime


class StatusTotalsV1(_Value):
    count: int = Field(ge=0)
    amount_minor: int = Field(ge=0)


class PayrollReconciledV1(EventData):
    """Nothing of the payroll is pending any more: settled + failed + expired (+ reversed)
    equal the payroll, in count and amount."""

    service = "disbursement"
    event_name = "PayrollReconciled"

    payroll_id: UUID
    programme_id: UUID
    cycle_id: UUID
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    line_count: int = Field(ge=0)
    total_amount_minor: int = Field(ge=0)
    by_status: dict[str, StatusTotalsV1] = Field(description="settled, failed, expired, reversed")
    exceptions_open: int = Field(ge=0)
    fees_minor: int = Field(ge=0)
    reconciled_at: datetime

    def subject(self) -> str:
        return str(self.payroll_id)
