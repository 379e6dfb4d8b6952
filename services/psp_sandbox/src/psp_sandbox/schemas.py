"""HTTP bodies of the sandbox's own API (the PSP API itself speaks amana_contracts.psp)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from amana_contracts.psp import MAX_RESULTS_PER_WEBHOOK
from psp_sandbox.domain import DEFAULT_REASON_MIX, STALE_AFTER_S, webhook_secret_problem

MAX_SEED = 2**63 - 1
MAX_URL_LENGTH = 2048
_UNSAFE_URL_CHARACTERS = re.compile(r"[\s\\\x00-\x1f\x7f]")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _webhook_url(url: str) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if _UNSAFE_URL_CHARACTERS.search(url):
        raise ValueError("must not contain whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as error:
        raise ValueError(f"is not a valid URL ({error})") from error
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    if "@" in parts.netloc or parts.fragment:
        raise ValueError("must not carry credentials or a fragment")
    return url


def _webhook_secret(secret: str) -> str:
    problem = webhook_secret_problem(secret)
    if problem:
        raise ValueError(problem)
    return secret


WebhookUrl = Annotated[str, AfterValidator(_webhook_url)]
WebhookSecret = Annotated[str, AfterValidator(_webhook_secret)]
ApiKey = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{24,200}$")]
ReasonCode = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9_]{2,35}$")]


class ProviderConfigIn(_In):
    """A simulated provider account: what Amana calls it with, where it posts results, and
    how it settles."""

    api_key: ApiKey = Field(
        description="The bearer token Amana's calls carry (24-200 visible ASCII); kept hashed"
    )
    webhook_url: WebhookUrl = Field(
        description="Amana's webhook, e.g. http://127.0.0.1:8000/webhooks/providers/<id>"
    )
    webhook_secret: WebhookSecret = Field(
        description="The `whsec_…` secret Amana generated for this provider"
    )
    settle_delay_s: float = Field(default=5.0, ge=0, le=86_400)
    failure_rate: float = Field(default=0.1, ge=0, le=1)
    reason_mix: dict[ReasonCode, Annotated[int, Field(ge=0, le=1_000_000)]] = Field(
        default_factory=lambda: dict(DEFAULT_REASON_MIX),
        min_length=1,
        max_length=50,
        description="Failure reason code -> weight; codes that cannot happen with a payment's "
        "mechanism are not drawn for it",
    )
    results_per_webhook: int = Field(default=100, ge=1, le=MAX_RESULTS_PER_WEBHOOK)
    seed: int = Field(default=1, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _some_reason(self) -> ProviderConfigIn:
        if not any(self.reason_mix.values()):
            raise ValueError("reason_mix needs at least one code with a positive weight")
        return self


class ProviderConfigOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    webhook_url: str
    settle_delay_s: float
    failure_rate: float
    reason_mix: dict[str, int]
    results_per_webhook: int
    seed: int
    version: int
    created_at: datetime
    updated_at: datetime


# --- faults --------------------------------------------------------------------------------


class _Fault(_In):
    count: int | None = Field(
        default=None, ge=1, le=100_000, description="Applications, after which the fault ends"
    )
    for_s: float | None = Field(
        default=None, gt=0, le=86_400, description="Seconds, after which the fault ends"
    )
    seed: int = Field(default=1, ge=0, le=MAX_SEED, description="For rates and shuffles")

    @model_validator(mode="after")
    def _bounded(self) -> _Fault:
        if self.count is None and self.for_s is None:
            raise ValueError("every fault ends: give count, for_s or both")
        return self


class OutageFault(_Fault):
    """Calls of the PSP API answered 503 (with Retry-After), or, `refuse`, the port closed:
    connections are refused, the control API included, for `for_s` (at most 300) seconds."""

    kind: Literal["outage"]
    mode: Literal["503", "refuse"] = "503"
    retry_after_s: int = Field(default=5, ge=0, le=3600)

    @model_validator(mode="after")
    def _refuse_is_timed(self) -> OutageFault:
        if self.mode == "refuse" and (self.for_s is None or self.for_s > 300 or self.count):
            raise ValueError("a refuse outage is bounded by for_s (at most 300), not by count")
        return self


class SlowFault(_Fault):
    """Calls of the PSP API wait `delay_s` before they are handled."""

    kind: Literal["slow"]
    delay_s: float = Field(gt=0, le=120)


class Error500Fault(_Fault):
    """Calls of the PSP API answered 500 at `rate`; `after_accept`: the batch is accepted
    all the same (the answer is lost), so a retry must be answered as the first."""

    kind: Literal["error_500"]
    rate: float = Field(default=1.0, gt=0, le=1)
    after_accept: bool = False


class LateResultFault(_Fault):
    """Payments accepted meanwhile get their result `after_s` after their `pay_by`."""

    kind: Literal["late_result"]
    after_s: float = Field(default=60, ge=1, le=86_400)


class AmountMismatchFault(_Fault):
    """Settled results reported with an amount off by `delta_minor`."""

    kind: Literal["amount_mismatch"]
    delta_minor: int = Field(default=-100, ge=-(10**12), le=10**12)

    @model_validator(mode="after")
    def _off(self) -> AmountMismatchFault:
        if self.delta_minor == 0:
            raise ValueError("delta_minor must not be 0")
        return self


class ConflictingSettlementFault(_Fault):
    """Settled payments settled a second time, under another reference, in a later webhook."""

    kind: Literal["conflicting_settlement"]


class UnknownPaymentFault(_Fault):
    """A result for a payment number Amana never issued, added to a webhook."""

    kind: Literal["unknown_payment"]


class DuplicateWebhookFault(_Fault):
    """A delivered webhook delivered again: same webhook-id and body, fresh signature."""

    kind: Literal["duplicate_webhook"]


class DuplicateResultsFault(_Fault):
    """A delivered webhook's results sent again under a new webhook-id."""

    kind: Literal["duplicate_results"]


class ReorderFault(_Fault):
    """The webhooks cut in one round delivered last first, their results shuffled."""

    kind: Literal["reorder"]
    count: int | None = Field(default=None, ge=2, le=100_000, description="Webhooks reordered")


class ReplayFault(_Fault):
    """A delivered webhook sent again byte for byte, its original headers included, as an
    eavesdropper would, `delay_s` after it was planned."""

    kind: Literal["replay"]
    delay_s: float = Field(default=0, ge=0, le=3600)


class BadSignatureFault(_Fault):
    """A forged copy of a webhook, with its webhook-id, delivered before it: signed with
    another secret, its body changed after signing, its signature missing or malformed."""

    kind: Literal["bad_signature"]
    variant: Literal["wrong_secret", "tampered_body", "missing", "malformed"] = "wrong_secret"


class StaleTimestampFault(_Fault):
    """A validly signed copy of a webhook, with its webhook-id, delivered before it with a
    timestamp `age_s` seconds old (negative: in the future)."""

    kind: Literal["stale_timestamp"]
    age_s: float = Field(default=600, ge=-30 * 86_400, le=30 * 86_400)

    @model_validator(mode="after")
    def _outside_tolerance(self) -> StaleTimestampFault:
        if abs(self.age_s) <= STALE_AFTER_S:
            raise ValueError(f"age_s must be more than {STALE_AFTER_S} s either way")
        return self


FaultIn = Annotated[
    OutageFault
    | SlowFault
    | Error500Fault
    | LateResultFault
    | AmountMismatchFault
    | ConflictingSettlementFault
    | UnknownPaymentFault
    | DuplicateWebhookFault
    | DuplicateResultsFault
    | ReorderFault
    | ReplayFault
    | BadSignatureFault
    | StaleTimestampFault,
    Field(discriminator="kind"),
]

FAULT_COMMON_FIELDS = frozenset({"kind", "count", "for_s", "seed"})


def fault_params(fault: _Fault) -> dict[str, Any]:
    """What is particular to the fault's kind."""
    return fault.model_dump(mode="json", exclude=set(FAULT_COMMON_FIELDS))


class FaultsIn(_In):
    faults: list[FaultIn] = Field(max_length=50)


class FaultOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    provider_id: UUID | None = Field(description="None: every provider")
    kind: str
    params: dict[str, Any]
    max_count: int | None
    active_until: datetime | None
    seen: int = Field(description="Calls a rate-based fault considered")
    applied: int
    in_force: bool
    created_at: datetime
    cleared_at: datetime | None


class InjectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    fault_id: UUID
    kind: str
    provider_id: UUID | None
    batch_id: UUID | None
    payment_number: str | None
    delivery_id: UUID | None
    detail: dict[str, Any]
    injected_at: datetime


# --- deliveries ----------------------------------------------------------------------------

DeliveryStatus = Literal["pending", "delivered", "answered", "abandoned"]
VerdictValue = Literal["as_expected", "unexpected"]


class DeliveryOut(BaseModel):
    """One webhook delivery: genuine (`kind` results) or a fault's (`kind` the fault)."""

    model_config = ConfigDict(from_attributes=True)

    id: UUID
    webhook_id: str
    provider_id: UUID
    kind: str
    fault_id: UUID | None
    faults: list[str] = Field(description="Every fault that shaped this delivery")
    status: DeliveryStatus
    attempts: int
    result_count: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    answer_summary: dict[str, Any] | None = Field(
        description="received, applied, duplicates, exceptions from Amana's WebhookAnswer"
    )
    expected: dict[str, Any]
    verdict: VerdictValue | None
    verdict_detail: str | None
    created_at: datetime
    finished_at: datetime | None


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    started_at: datetime
    duration_ms: int
    headers: dict[str, str]
    status_code: int | None
    error: str | None
    answer: str | None


class DeliveryDetailOut(DeliveryOut):
    payment_numbers: list[str]
    signing: dict[str, Any]
    depends_on: list[UUID]
    body: dict[str, Any]
    attempt_log: list[AttemptOut]


# --- the PSP API's batch status ------------------------------------------------------------


class PaymentStatusOut(BaseModel):
    payment_number: str
    amount_minor: int
    currency: str
    status: Literal["pending", "settled", "failed"]
    reason_code: str | None
    provider_reference: str | None
    result_at: datetime | None
    reported: bool = Field(description="Its result was delivered to Amana (a 2xx answer)")


class StatusCounts(BaseModel):
    pending: int
    settled: int
    failed: int


class BatchStatusOut(BaseModel):
    batch_id: UUID
    provider_id: UUID
    status: Literal["accepted", "in_progress", "completed"]
    currency: str
    payment_count: int
    total_amount_minor: int
    accepted_at: datetime
    counts: StatusCounts
    payments: list[PaymentStatusOut]
