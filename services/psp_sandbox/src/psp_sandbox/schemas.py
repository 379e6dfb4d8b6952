"""HTTP bodies of the sandbox. The PSP API takes the contract's `PaymentBatch`
(amana_contracts.psp), its text checked like every Amana input (`amana_common.validation`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from amana_common.validation import CurrencyCode, Name, Text
from amana_contracts.psp import (
    MAX_PAYMENTS_PER_BATCH,
    MAX_RESULTS_PER_WEBHOOK,
    BatchPayment,
    BatchRecipient,
    PaymentBatch,
)
from amana_contracts.registry import AccountV1, IdentifierV1
from psp_sandbox.domain import (
    DEFAULT_REASON_MIX,
    STALE_AFTER_S,
    DeliveryStatus,
    FaultKind,
    Verdict,
    webhook_secret_problem,
)

MAX_SEED = 2**63 - 1
MAX_URL_LENGTH = 2048
_UNSAFE_URL_CHARACTERS = re.compile(r"[\s\\]")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the PSP API's batch, with Amana's text rules --------------------------------------------

PaymentNumber = Annotated[str, Text(pattern=r"^[\x21-\x7e]{1,64}$", strip=False)]
Code = Annotated[str, Text(min_length=1, max_length=64)]
AccountText = Annotated[str, Text(min_length=1, max_length=100)]


class IdentifierIn(IdentifierV1):
    value: AccountText


class RecipientIn(BatchRecipient):
    name: Name
    identifier: IdentifierIn | None = None
    phone: Annotated[str, Text(max_length=32)] | None = None


class AccountIn(AccountV1):
    value: AccountText
    bank_code: Annotated[str, Text(max_length=35)] | None = None
    holder_name: Name | None = None


class BatchPaymentIn(BatchPayment):
    payment_number: PaymentNumber
    currency: CurrencyCode
    recipient: RecipientIn
    account: AccountIn | None = None
    pay_point_code: Code | None = None


class PaymentBatchIn(PaymentBatch):
    """`PaymentBatch` as the sandbox reads it: the same fields, every text checked."""

    currency: CurrencyCode
    payments: list[BatchPaymentIn] = Field(  # type: ignore[assignment]
        min_length=1, max_length=MAX_PAYMENTS_PER_BATCH
    )


# --- provider accounts ---------------------------------------------------------------------


def _webhook_url(url: str) -> str:
    if _UNSAFE_URL_CHARACTERS.search(url):
        raise ValueError("must not contain whitespace or backslashes")
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


WebhookUrl = Annotated[
    str, Text(min_length=1, max_length=MAX_URL_LENGTH, strip=False), AfterValidator(_webhook_url)
]
WebhookSecret = Annotated[str, Text(max_length=200, strip=False), AfterValidator(_webhook_secret)]
ApiKey = Annotated[str, Text(pattern=r"^[\x21-\x7e]{16,200}$", strip=False)]
ReasonCode = Annotated[str, Text(pattern=r"^[A-Z0-9_]{2,35}$", strip=False)]


class ProviderConfigIn(_In):
    """A simulated provider account: what Amana calls it with, where it posts results, and
    how it settles."""

    api_key: ApiKey = Field(
        description="The bearer token Amana's calls carry: disbursement's API credential for "
        "the provider (16-200 visible ASCII); kept hashed"
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

REQUIRED = object()
"""A parameter its kind of fault cannot do without."""


class FaultIn(_In):
    """A fault: its `kind`, its bound (`count` applications or `for_s` seconds, or both), and
    the parameters of its kind (README, "Faults"). A parameter of another kind is refused."""

    kind: FaultKind
    count: int | None = Field(
        default=None, ge=1, le=100_000, description="Applications, after which the fault ends"
    )
    for_s: float | None = Field(
        default=None, gt=0, le=86_400, description="Seconds, after which the fault ends"
    )
    seed: int = Field(default=1, ge=0, le=MAX_SEED, description="For rates and shuffles")
    mode: Literal["503", "refuse"] | None = Field(
        default=None, description="outage: 503 answers, or the port closed (`refuse`)"
    )
    retry_after_s: int | None = Field(default=None, ge=0, le=3600, description="outage (503)")
    delay_s: float | None = Field(
        default=None, ge=0, le=3600, description="slow: the wait (≤ 120); replay: its delay"
    )
    rate: float | None = Field(default=None, gt=0, le=1, description="error_500")
    after_accept: bool | None = Field(
        default=None, description="error_500: the batch is accepted, the answer lost"
    )
    after_s: float | None = Field(
        default=None, ge=1, le=86_400, description="late_result: seconds after pay_by"
    )
    delta_minor: int | None = Field(
        default=None, ge=-(10**12), le=10**12, description="amount_mismatch: not 0"
    )
    variant: Literal["wrong_secret", "tampered_body", "missing", "malformed"] | None = Field(
        default=None, description="bad_signature"
    )
    age_s: float | None = Field(
        default=None,
        ge=-30 * 86_400,
        le=30 * 86_400,
        description="stale_timestamp: more than 300 s old (negative: in the future)",
    )

    PARAMETERS: ClassVar[dict[FaultKind, dict[str, Any]]] = {
        FaultKind.outage: {"mode": "503", "retry_after_s": 5},
        FaultKind.slow: {"delay_s": REQUIRED},
        FaultKind.error_500: {"rate": 1.0, "after_accept": False},
        FaultKind.late_result: {"after_s": 60.0},
        FaultKind.amount_mismatch: {"delta_minor": -100},
        FaultKind.conflicting_settlement: {},
        FaultKind.unknown_payment: {},
        FaultKind.duplicate_webhook: {},
        FaultKind.duplicate_results: {},
        FaultKind.reorder: {},
        FaultKind.replay: {"delay_s": 0.0},
        FaultKind.bad_signature: {"variant": "wrong_secret"},
        FaultKind.stale_timestamp: {"age_s": 600.0},
    }
    PARAMETER_NAMES: ClassVar[tuple[str, ...]] = (
        "mode",
        "retry_after_s",
        "delay_s",
        "rate",
        "after_accept",
        "after_s",
        "delta_minor",
        "variant",
        "age_s",
    )

    @model_validator(mode="after")
    def _fits_its_kind(self) -> FaultIn:
        if self.count is None and self.for_s is None:
            raise ValueError("every fault ends: give count, for_s or both")
        own = self.PARAMETERS[self.kind]
        for name in self.PARAMETER_NAMES:
            if getattr(self, name) is not None and name not in own:
                raise ValueError(f"{name} does not apply to a {self.kind} fault")
        for name, default in own.items():
            if default is REQUIRED and getattr(self, name) is None:
                raise ValueError(f"a {self.kind} fault needs {name}")
        problem = self._kind_problem(self.params())
        if problem:
            raise ValueError(problem)
        return self

    def _kind_problem(self, params: dict[str, Any]) -> str | None:
        refuse = self.kind is FaultKind.outage and params["mode"] == "refuse"
        if refuse and (self.for_s is None or self.for_s > 300 or self.count is not None):
            return "a refuse outage is bounded by for_s (at most 300), not by count"
        if self.kind is FaultKind.slow and not 0 < params["delay_s"] <= 120:
            return "a slow fault's delay_s is more than 0 and at most 120"
        if self.kind is FaultKind.amount_mismatch and params["delta_minor"] == 0:
            return "delta_minor must not be 0"
        if self.kind is FaultKind.reorder and self.count is not None and self.count < 2:
            return "a reorder needs a count of at least 2 webhooks"
        if self.kind is FaultKind.stale_timestamp and abs(params["age_s"]) <= STALE_AFTER_S:
            return f"age_s must be more than {STALE_AFTER_S} s either way"
        return None

    def params(self) -> dict[str, Any]:
        """The parameters of its kind, defaults filled in."""
        return {
            name: default if getattr(self, name) is None else getattr(self, name)
            for name, default in self.PARAMETERS[self.kind].items()
        }

    @property
    def refuses_connections(self) -> bool:
        return self.kind is FaultKind.outage and self.params()["mode"] == "refuse"


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
    verdict: Verdict | None
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
