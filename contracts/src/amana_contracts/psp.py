"""The payment service provider (PSP) API that Amana speaks, shared by the disbursement service
and the PSP sandbox. Not events: HTTP bodies.

Outbound (Amana → provider): `POST {base_url}/batches` with `Idempotency-Key: <batch id>` and
the provider's API credential as a bearer token; the provider answers 202 and pays later. A
second POST of the same batch id is answered like the first and pays nothing twice.

Inbound (provider → Amana): `POST /webhooks/providers/{provider_id}`, signed with the Standard
Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`; a `whsec_…` secret per
provider), carrying a list of payment results. The answer says per result what happened.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from amana_contracts.provider import Mechanism
from amana_contracts.registry import AccountV1, IdentifierV1

MAX_PAYMENTS_PER_BATCH = 10_000
MAX_RESULTS_PER_WEBHOOK = 5_000

ResultStatus = Literal["settled", "failed", "reversed"]
ItemOutcome = Literal["applied", "duplicate", "exception"]
ExceptionKind = Literal[
    "unknown_payment",
    "other_provider",
    "amount_mismatch",
    "currency_mismatch",
    "conflicting_settlement",
    "result_after_terminal",
    "result_after_expiry",
    "invalid_transition",
    "unknown_reason_code",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchRecipient(_Body):
    name: str
    identifier: IdentifierV1 | None = None
    phone: str | None = None


class BatchPayment(_Body):
    payment_number: str
    amount_minor: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    mechanism: Mechanism
    recipient: BatchRecipient
    account: AccountV1 | None = None
    pay_point_code: str | None = None
    pay_by: datetime = Field(description="End of the payment window")


class PaymentBatch(_Body):
    """`POST {base_url}/batches`, `Idempotency-Key: <batch_id>`."""

    batch_id: UUID
    provider_id: UUID
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    payment_count: int = Field(ge=1)
    total_amount_minor: int = Field(gt=0)
    payments: list[BatchPayment] = Field(min_length=1, max_length=MAX_PAYMENTS_PER_BATCH)


class BatchAccepted(_Body):
    """The provider's 202 answer."""

    batch_id: UUID
    accepted: int = Field(ge=0)
    status: Literal["accepted"] = "accepted"


class PaymentResult(_Body):
    payment_number: str
    status: ResultStatus
    amount_minor: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    provider_reference: str = Field(min_length=1, max_length=100)
    occurred_at: datetime
    reason_code: str | None = Field(
        default=None, description="failed/reversed: ISO 20022 ExternalStatusReason or cash code"
    )
    fee_minor: int = Field(default=0, ge=0)


class ResultsWebhook(_Body):
    """The signed body of `POST /webhooks/providers/{provider_id}`."""

    type: Literal["payment.results"] = "payment.results"
    results: list[PaymentResult] = Field(min_length=1, max_length=MAX_RESULTS_PER_WEBHOOK)


class ResultOutcome(_Body):
    payment_number: str
    outcome: ItemOutcome
    exception: ExceptionKind | None = None
    detail: str | None = None


class WebhookAnswer(_Body):
    received: int
    applied: int
    duplicates: int
    exceptions: int
    results: list[ResultOutcome]
