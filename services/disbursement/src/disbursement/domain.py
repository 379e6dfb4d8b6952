"""Disbursement rules, free of HTTP and SQL: the payment state machine, payment numbers, reason
codes, batch composition, dispatch backoff and circuit breaker, fees and reconciliation.

Payment states (README, "Payment states"):

    pending ──dispatch──▶ sent ──settle──▶ settled ──reverse──▶ reversed
       │                   │ ╲──fail────▶ failed
       │                   ╰──expire──▶ expired
       ╰── settle | fail | expire (a result proves the provider had the payment even when
           its 202 answer was lost, so a pending payment may take a result too)

`settled`, `failed`, `expired` and `reversed` are terminal for results: a second result for a
terminal payment is a duplicate (same outcome, same reference) or an exception for review,
never a change. The one transition out of a terminal state is the reversal of a settled
payment, which the provider reports when funds came back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Literal
from uuid import UUID

from amana_common.check_digits import is_mod97_10_valid, numbered_mod97_10
from amana_contracts.psp import ExceptionKind, PaymentResult

# --- payment numbers ----------------------------------------------------------------------

NUMBER_PREFIX = "P"
NUMBER_DIGITS = 10
MAX_NUMBER_SEQUENCE = 10**NUMBER_DIGITS - 1


def payment_number(sequence: int) -> str:
    """`P`, the zero-padded sequence, and two ISO 7064 Mod 97-10 check digits computed over
    both (the letter counts as 25, as in an IBAN): payment_number(1) == "P000000000109". A
    mistyped digit or a swapped pair of digits never passes `is_payment_number`."""
    if not 1 <= sequence <= MAX_NUMBER_SEQUENCE:
        raise ValueError(f"a payment sequence is 1..{MAX_NUMBER_SEQUENCE}, not {sequence}")
    return numbered_mod97_10(NUMBER_PREFIX, sequence, NUMBER_DIGITS)


def is_payment_number(text: str) -> bool:
    return (
        len(text) == 1 + NUMBER_DIGITS + 2
        and text.startswith(NUMBER_PREFIX)
        and text[1:].isascii()
        and text[1:].isdigit()
        and is_mod97_10_valid(text)
    )


# --- states and transitions -----------------------------------------------------------------


class Status(StrEnum):
    pending = "pending"
    sent = "sent"
    settled = "settled"
    failed = "failed"
    expired = "expired"
    reversed = "reversed"


OPEN = frozenset({Status.pending, Status.sent})
TERMINAL = frozenset({Status.settled, Status.failed, Status.expired, Status.reversed})


class InvalidTransition(Exception):
    """A change the state machine does not allow; `kind` says how to report it."""

    def __init__(self, kind: ExceptionKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: ExceptionKind = kind
        self.detail = detail


def dispatch(status: Status) -> Status:
    """The provider accepted the batch (202) or its file was downloaded."""
    if status is Status.pending:
        return Status.sent
    if status is Status.sent:
        return Status.sent  # a batch sent again after a lost answer: nothing changes
    raise InvalidTransition("invalid_transition", f"a {status} payment cannot be sent")


def expire(status: Status) -> Status:
    """The payment window closed while the payment was still open."""
    if status in OPEN:
        return Status.expired
    raise InvalidTransition("invalid_transition", f"a {status} payment cannot expire")


# --- reason codes -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReasonCode:
    code: str
    name: str
    description: str
    retryable: bool
    source: Literal["iso20022", "amana"]


def _iso(code: str, name: str, description: str, retryable: bool) -> ReasonCode:
    return ReasonCode(code, name, description, retryable, "iso20022")


def _amana(code: str, name: str, description: str, retryable: bool) -> ReasonCode:
    return ReasonCode(code, name, description, retryable, "amana")


EXPIRED_REASON = "EXPD"

REASON_CODES: dict[str, ReasonCode] = {
    r.code: r
    for r in (
        _iso("AC01", "IncorrectAccountNumber", "The account number is wrong.", False),
        _iso("AC03", "InvalidCreditorAccountNumber", "The recipient's account is invalid.", False),
        _iso("AC04", "ClosedAccountNumber", "The recipient's account is closed.", False),
        _iso("AC06", "BlockedAccount", "The recipient's account is blocked.", False),
        _iso("AG01", "TransactionForbidden", "The account may not receive this payment.", False),
        _iso("AM04", "InsufficientFunds", "The provider's float could not cover it.", True),
        _iso("AM05", "Duplication", "The provider saw this payment as a duplicate.", False),
        _iso("AM09", "WrongAmount", "The amount is not what the provider expected.", False),
        _iso("AB05", "TimeoutCreditorAgent", "The recipient's agent did not answer.", True),
        _iso("BE01", "InconsistentWithEndCustomer", "Recipient and account do not match.", False),
        _iso("MD07", "EndCustomerDeceased", "The recipient has died.", False),
        _iso("MS03", "NotSpecifiedReasonAgentGenerated", "The provider gave no reason.", True),
        _iso("RC01", "BankIdentifierIncorrect", "The bank code is wrong.", False),
        _iso("RR04", "RegulatoryReason", "Refused for a regulatory reason.", False),
        _iso("NARR", "Narrative", "See the provider's narrative.", True),
        _amana("NCOL", "NotCollected", "The recipient did not come to the pay point.", True),
        _amana("NOID", "NoIdentity", "The recipient could not prove their identity.", True),
        _amana("PPCL", "PayPointClosed", "The pay point was closed.", True),
        _amana("NCSH", "PayPointOutOfCash", "The pay point ran out of cash.", True),
        _amana("RFSD", "RefusedByRecipient", "The recipient refused the payment.", False),
        _amana(EXPIRED_REASON, "PaymentWindowClosed", "Unpaid when the window closed.", True),
    )
}


def is_retryable(reason_code: str) -> bool:
    reason = REASON_CODES.get(reason_code)
    return reason.retryable if reason is not None else False


# --- applying a provider's result -----------------------------------------------------------


@dataclass(frozen=True)
class PaymentState:
    """What a result is checked against."""

    payment_id: UUID
    provider_id: UUID
    status: Status
    amount_minor: int
    currency: str
    provider_reference: str | None = None
    reason_code: str | None = None


@dataclass(frozen=True)
class Applied:
    state: PaymentState


@dataclass(frozen=True)
class Duplicate:
    pass


@dataclass(frozen=True)
class Anomaly:
    kind: ExceptionKind
    detail: str


Decision = Applied | Duplicate | Anomaly


def apply_result(
    payment: PaymentState | None, result: PaymentResult, reporting_provider: UUID
) -> Decision:
    """What a provider's result does to a payment: a new state, a duplicate, or an anomaly to
    keep as a reconciliation exception. Never raises for a partner's data."""
    if payment is None:
        return Anomaly("unknown_payment", "no payment has this number")
    if payment.provider_id != reporting_provider:
        return Anomaly("other_provider", "the payment belongs to another provider")
    if result.currency != payment.currency:
        return Anomaly("currency_mismatch", f"expected {payment.currency}")
    if result.amount_minor != payment.amount_minor:
        return Anomaly("amount_mismatch", f"expected {payment.amount_minor}")
    if result.status != "settled" and (result.reason_code or "") not in REASON_CODES:
        return Anomaly("unknown_reason_code", "needs a reason code of GET /reason-codes")
    return _transition(payment, result)


def _transition(payment: PaymentState, result: PaymentResult) -> Decision:
    status, reference = payment.status, result.provider_reference
    if _repeats(payment, result):
        return Duplicate()
    if status is Status.expired:
        return Anomaly("result_after_expiry", "the payment expired before this result")
    if result.status == "reversed":
        if status is Status.settled:
            return Applied(replace(payment, status=Status.reversed, reason_code=result.reason_code))
        return Anomaly("invalid_transition", f"a {status} payment cannot be reversed")
    if status is Status.settled and result.status == "settled":
        return Anomaly("conflicting_settlement", "already settled with another reference")
    if status in TERMINAL:
        return Anomaly("result_after_terminal", f"the payment is {status} already")
    if result.status == "settled":
        return Applied(replace(payment, status=Status.settled, provider_reference=reference))
    failed = replace(payment, status=Status.failed, provider_reference=reference)
    return Applied(replace(failed, reason_code=result.reason_code))


def _repeats(payment: PaymentState, result: PaymentResult) -> bool:
    """The same outcome with the same provider reference: the provider said it before."""
    return payment.status.value == result.status and (
        payment.provider_reference == result.provider_reference or payment.status is Status.reversed
    )


# --- payment window -------------------------------------------------------------------------


def pay_by(payment_window_end: date) -> datetime:
    """The end of the window's last day, in UTC: a payment open after it expires."""
    return datetime.combine(payment_window_end + timedelta(days=1), time(), tzinfo=UTC)


# --- batches --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPlan:
    provider_id: UUID
    sequence: int
    payment_count: int
    total_amount_minor: int


def compose_batches(payments: Iterable[tuple[UUID, int]], batch_size: int) -> list[BatchPlan]:
    """Payments (provider, amount), in their order, cut per provider into batches of at most
    `batch_size`, numbered from 1 per provider. The database composes the same batches
    set-based (repository.create_payments); this is the rule it follows."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    positions: dict[UUID, int] = {}
    plans: dict[tuple[UUID, int], BatchPlan] = {}
    for provider_id, amount in payments:
        position = positions.get(provider_id, 0)
        positions[provider_id] = position + 1
        key = (provider_id, position // batch_size + 1)
        plan = plans.get(key) or BatchPlan(provider_id, key[1], 0, 0)
        plans[key] = replace(
            plan,
            payment_count=plan.payment_count + 1,
            total_amount_minor=plan.total_amount_minor + amount,
        )
    return list(plans.values())


# --- dispatch: backoff and circuit breaker ------------------------------------------------


def backoff_delay(attempt: int, base_s: float, cap_s: float, jitter: float) -> float:
    """Exponential backoff with full jitter before retry `attempt` (1 = after the first
    failure): a `jitter` in [0, 1) of min(cap, base * 2^(attempt-1)), so that many batches
    failing together do not retry together."""
    if attempt < 1 or not 0 <= jitter < 1:
        raise ValueError("attempt >= 1 and 0 <= jitter < 1")
    ceiling = min(cap_s, base_s * math.pow(2, attempt - 1))
    return ceiling * jitter


def is_retryable_http_status(status_code: int) -> bool:
    """5xx, 408 and 429 may pass; any other answer than 202 will not change by retrying."""
    return status_code >= 500 or status_code in (408, 429)


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


@dataclass(frozen=True)
class Breaker:
    """A provider's circuit breaker: `threshold` failures in a row open it; after `cooldown`
    one trial call may pass (half open); its success closes it, its failure opens it again."""

    state: BreakerState = BreakerState.closed
    consecutive_failures: int = 0
    opened_at: datetime | None = None

    def admits(self, now: datetime, cooldown: timedelta) -> Breaker | None:
        """The breaker after admitting one call, or None when the call must wait. A trial
        restarts the cooldown, so a trial whose worker vanished is followed by another."""
        if self.state is BreakerState.closed:
            return self
        if self.opened_at is not None and now - self.opened_at >= cooldown:
            return replace(self, state=BreakerState.half_open, opened_at=now)
        return None

    def succeeded(self) -> Breaker:
        return Breaker()

    def failed(self, now: datetime, threshold: int) -> Breaker:
        failures = self.consecutive_failures + 1
        if self.state is BreakerState.half_open or failures >= threshold:
            return Breaker(BreakerState.open, failures, now)
        return replace(self, consecutive_failures=failures)


# --- fees -----------------------------------------------------------------------------------


def expected_fee(amount_minor: int, fixed_minor: int, basis_points: int) -> int:
    """fixed + amount x basis points / 10,000, rounded half up to a minor unit."""
    return fixed_minor + (amount_minor * basis_points + 5_000) // 10_000


# --- amounts for files --------------------------------------------------------------------

_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_MINOR_UNITS = {
    **{code: 0 for code in _ZERO_DECIMALS.split()},
    **{code: 3 for code in _THREE_DECIMALS.split()},
}


def minor_unit_digits(currency: str) -> int:
    """ISO 4217 minor unit: 2 for most currencies, 0 for UGX or RWF, 3 for JOD or KWD."""
    return _MINOR_UNITS.get(currency, 2)


def major_amount(amount_minor: int, currency: str) -> str:
    """12345 KES -> "123.45"; 500 UGX -> "500"; exact, no floating point."""
    digits = minor_unit_digits(currency)
    if digits == 0:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10**digits)
    return f"{whole}.{fraction:0{digits}d}"


# --- reconciliation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    count: int = 0
    amount_minor: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.count + other.count, self.amount_minor + other.amount_minor)


RECONCILED_STATUSES = (Status.settled, Status.failed, Status.expired, Status.reversed)


@dataclass(frozen=True)
class Reconciliation:
    """A payroll against its payments: settled + failed + expired + reversed + open (pending
    and sent) equal the payroll, in count and amount. Reversed payments were settled and came
    back, so they count once, as reversed."""

    payroll: Totals
    by_status: Mapping[Status, Totals]

    def of(self, status: Status) -> Totals:
        return self.by_status.get(status, Totals())

    @property
    def open(self) -> Totals:
        return self.of(Status.pending) + self.of(Status.sent)

    @property
    def accounted(self) -> Totals:
        total = self.open
        for status in RECONCILED_STATUSES:
            total = total + self.of(status)
        return total

    @property
    def balanced(self) -> bool:
        return self.accounted == self.payroll

    @property
    def complete(self) -> bool:
        """Nothing is open any more and every payment is accounted for."""
        return self.balanced and self.open.count == 0


def reconcile(payroll: Totals, rows: Sequence[tuple[str, int, int]]) -> Reconciliation:
    """From (status, count, amount) rows as the database groups them."""
    by_status: dict[Status, Totals] = {}
    for status, count, amount in rows:
        key = Status(status)
        by_status[key] = by_status.get(key, Totals()) + Totals(count, amount)
    return Reconciliation(payroll, by_status)
