"""The simulated provider's rules, pure: no HTTP, no session.

- what becomes of each payment (settled, or failed with a reason drawn from the provider's
  mix), decided from the provider's seed and the payment number alone, so the same seed and
  numbers give the same outcomes whatever the timing;
- which injected faults apply to a request, and how the results that fell due are cut into
  webhooks, with the faults' extra, forged, delayed or reordered deliveries;
- how each webhook is signed (Standard Webhooks, by the `standardwebhooks` library);
- what Amana is expected to answer to each delivery, and the verdict on what it answered;
- when a refused delivery is tried again.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from amana_contracts.psp import MAX_RESULTS_PER_WEBHOOK, PaymentBatch, PaymentResult, WebhookAnswer

# --- reasons for non-payment ---------------------------------------------------------------

CASH_NO_SHOW = "NCOL"
"""Not ISO 20022 but Amana's documented code (`GET /reason-codes`): the recipient did not
come to the pay point (or redeem the voucher)."""

ACCOUNT_MECHANISMS = frozenset({"mobile_money", "bank_transfer", "prepaid_card"})
IN_PERSON_MECHANISMS = frozenset({"cash_pay_point", "voucher"})
ALL_MECHANISMS = ACCOUNT_MECHANISMS | IN_PERSON_MECHANISMS

REASONS: dict[str, tuple[str, frozenset[str]]] = {
    "AC01": ("Incorrect account number", ACCOUNT_MECHANISMS),
    "AC04": ("Closed account number", ACCOUNT_MECHANISMS),
    "AC06": ("Blocked account", ACCOUNT_MECHANISMS),
    "AM04": ("Insufficient funds", ALL_MECHANISMS),
    "BE01": ("Inconsistent with end customer (identity check failed)", ALL_MECHANISMS),
    "MD07": ("End customer deceased", ALL_MECHANISMS),
    CASH_NO_SHOW: ("Recipient did not come to the pay point", IN_PERSON_MECHANISMS),
    "NOID": ("Recipient could not prove their identity", IN_PERSON_MECHANISMS),
    "PPCL": ("Pay point closed", IN_PERSON_MECHANISMS),
    "NCSH": ("Pay point out of cash", IN_PERSON_MECHANISMS),
}
"""Code -> (meaning, mechanisms it can happen with). A code not listed fits every mechanism."""

DEFAULT_REASON_MIX: dict[str, int] = {
    "AC01": 20,
    "AC04": 8,
    "AC06": 7,
    "AM04": 5,
    "BE01": 15,
    "MD07": 5,
    CASH_NO_SHOW: 40,
}
"""Weights, not percentages: wrong, closed or blocked accounts and identity mismatches
dominate account payments, no-shows dominate cash."""


def applicable_reasons(reason_mix: Mapping[str, int], mechanism: str) -> dict[str, int]:
    """The mix's codes that can happen with `mechanism`, by weight, in code order; the whole
    mix when none of its codes fits."""
    weighted = {code: reason_mix[code] for code in sorted(reason_mix) if reason_mix[code] > 0}
    fitting = {
        code: weight
        for code, weight in weighted.items()
        if mechanism in REASONS.get(code, ("", ALL_MECHANISMS))[1]
    }
    return fitting or weighted


# --- outcomes ------------------------------------------------------------------------------

ResultStatus = Literal["settled", "failed"]


@dataclass(frozen=True)
class Outcome:
    status: ResultStatus
    reason_code: str | None
    provider_reference: str


def seeded(seed: int, *parts: object) -> random.Random:
    """A generator determined by the seed and the parts (a string seed is hashed with SHA-512,
    so it does not depend on the process or on PYTHONHASHSEED)."""
    return random.Random(":".join(str(part) for part in (seed, *parts)))  # noqa: S311 - simulation


def draw(seed: int, *parts: object) -> float:
    """A number in [0, 1) determined by the seed and the parts."""
    return seeded(seed, *parts).random()


def decide_outcome(
    seed: int,
    payment_number: str,
    mechanism: str,
    failure_rate: float,
    reason_mix: Mapping[str, int],
) -> Outcome:
    rng = seeded(seed, payment_number)
    reference = f"SBX-{rng.getrandbits(60):015X}"
    if rng.random() >= failure_rate:
        return Outcome("settled", None, reference)
    reasons = applicable_reasons(reason_mix, mechanism)
    (code,) = rng.choices(list(reasons), weights=list(reasons.values()))
    return Outcome("failed", code, reference)


def result_due_at(
    accepted_at: datetime, settle_delay_s: float, pay_by: datetime, late_by_s: float | None = None
) -> datetime:
    """When the payment's result happens: after the provider's delay, or, for a result made
    late by a fault, `late_by_s` after the end of the payment window."""
    due = accepted_at + timedelta(seconds=settle_delay_s)
    if late_by_s is not None:
        due = max(due, pay_by + timedelta(seconds=late_by_s))
    return due


# --- batches -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


def batch_fingerprint(batch: PaymentBatch) -> str:
    """Equal for the same batch however its JSON was spelled (key order, spacing, offsets)."""
    return hashlib.sha256(batch.model_dump_json().encode()).hexdigest()


def batch_errors(batch: PaymentBatch, provider_id: UUID) -> list[FieldError]:
    """What field types cannot say: the batch is the caller's, its count and total add up,
    its payments are in its currency, distinct, and their windows end at a definite time."""
    errors: list[FieldError] = []
    if batch.provider_id != provider_id:
        errors.append(FieldError("provider_id", "is not the provider this API key belongs to"))
    if batch.payment_count != len(batch.payments):
        errors.append(
            FieldError(
                "payment_count",
                f"says {batch.payment_count}, the batch has {len(batch.payments)} payments",
            )
        )
    total = sum(payment.amount_minor for payment in batch.payments)
    if batch.total_amount_minor != total:
        errors.append(
            FieldError(
                "total_amount_minor",
                f"says {batch.total_amount_minor}, the payments add up to {total}",
            )
        )
    seen: set[str] = set()
    for index, payment in enumerate(batch.payments):
        where = f"payments.{index}"
        if payment.payment_number in seen:
            errors.append(FieldError(f"{where}.payment_number", "is listed twice in the batch"))
        seen.add(payment.payment_number)
        if payment.currency != batch.currency:
            errors.append(FieldError(f"{where}.currency", "differs from the batch currency"))
        if payment.pay_by.tzinfo is None:
            errors.append(FieldError(f"{where}.pay_by", "must carry a time zone"))
    return errors


# --- faults --------------------------------------------------------------------------------


class FaultKind(StrEnum):
    # on Amana's calls to the PSP API
    outage = "outage"
    slow = "slow"
    error_500 = "error_500"
    # on payments, when a batch is accepted
    late_result = "late_result"
    # on results, when they are cut into webhooks
    amount_mismatch = "amount_mismatch"
    conflicting_settlement = "conflicting_settlement"
    unknown_payment = "unknown_payment"
    # on webhooks
    duplicate_webhook = "duplicate_webhook"
    duplicate_results = "duplicate_results"
    reorder = "reorder"
    replay = "replay"
    bad_signature = "bad_signature"
    stale_timestamp = "stale_timestamp"


REQUEST_FAULTS = frozenset({FaultKind.outage, FaultKind.slow, FaultKind.error_500})
PLANNING_FAULTS = frozenset(FaultKind) - REQUEST_FAULTS - {FaultKind.late_result}


@dataclass
class ActiveFault:
    """A fault still in force: `remaining` applications left (None: bounded by time only)."""

    id: UUID
    kind: FaultKind
    params: Mapping[str, Any]
    remaining: int | None
    seed: int
    taken: int = 0

    def take(self, wanted: int = 1, at_least: int = 1) -> int:
        """Uses up to `wanted` applications and answers how many; none unless `at_least`."""
        available = wanted if self.remaining is None else min(wanted, self.remaining - self.taken)
        if available < at_least:
            return 0
        self.taken += available
        return available


def faults_of(faults: Sequence[ActiveFault], kind: FaultKind) -> list[ActiveFault]:
    return [fault for fault in faults if fault.kind is kind]


@dataclass(frozen=True)
class Injection:
    """One application of a fault, for the log a test asserts on."""

    fault_id: UUID
    kind: FaultKind
    payment_number: str | None = None
    delivery_key: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


RequestAnswer = Literal["unavailable", "error", "error_after_accept"]


@dataclass(frozen=True)
class RequestDecision:
    """What the injected faults do to one call of the PSP API: wait `delay_s`, then answer
    normally (answer None), or 503, or 500 without doing anything, or do the work and answer
    500 all the same (the answer is lost; a retry must find the work done)."""

    delay_s: float = 0.0
    answer: RequestAnswer | None = None
    retry_after_s: int = 0
    injections: tuple[Injection, ...] = ()


def decide_request(
    faults: Sequence[ActiveFault], calls_seen: Mapping[UUID, int]
) -> RequestDecision:
    """`calls_seen[fault.id]` numbers this call among those the fault saw: whether the n-th
    call fails follows from the fault's seed and n alone, so a run is reproducible."""
    delay = 0.0
    injections: list[Injection] = []
    for fault in faults_of(faults, FaultKind.slow):
        if fault.take():
            delay = max(delay, float(fault.params["delay_s"]))
            injections.append(Injection(fault.id, fault.kind, detail={"delay_s": delay}))
    for fault in faults_of(faults, FaultKind.outage):
        if fault.params.get("mode") == "503" and fault.take():
            retry_after = int(fault.params.get("retry_after_s", 5))
            injections.append(Injection(fault.id, fault.kind, detail={"answer": 503}))
            return RequestDecision(delay, "unavailable", retry_after, tuple(injections))
    for fault in faults_of(faults, FaultKind.error_500):
        call = calls_seen.get(fault.id, 0)
        hit = draw(fault.seed, fault.kind.value, call) < float(fault.params["rate"])
        if hit and fault.take():
            after = bool(fault.params.get("after_accept", False))
            injections.append(Injection(fault.id, fault.kind, detail={"after_accept": after}))
            answer: RequestAnswer = "error_after_accept" if after else "error"
            return RequestDecision(delay, answer, 0, tuple(injections))
    return RequestDecision(delay, None, 0, tuple(injections))


def mismatched_amount(amount_minor: int, delta_minor: int) -> int:
    """The amount a faulty report gives instead: off by `delta_minor`, never negative."""
    shifted = amount_minor + delta_minor
    return shifted if shifted >= 0 else amount_minor - delta_minor


# --- expectations and verdicts -------------------------------------------------------------

APPLIED = "applied"
DUPLICATE = "duplicate"
ANY_EXCEPTION = "exception"
LATE_OUTCOMES = ["exception:result_after_expiry", "exception:result_after_terminal"]


def exception(kind: str) -> str:
    return f"exception:{kind}"


def expect_refusal() -> dict[str, Any]:
    """A 4xx: the delivery must not be accepted at all (forged, stale)."""
    return {"answer": "refused"}


def expect_nothing_applied() -> dict[str, Any]:
    """A 4xx, or a 2xx that applies nothing or repeats the first answer (the same webhook id
    again)."""
    return {"answer": "not_applied"}


def expect_items(
    default: list[str], items: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    """A 2xx whose per-result outcome is one of `items[number]`, else one of `default`."""
    return {"answer": "items", "default": default, "items": dict(items or {})}


Verdict = Literal["as_expected", "unexpected"]
DeliveryStatus = Literal["pending", "delivered", "answered", "abandoned"]
"""`delivered`: a 2xx (or a 409 to a redelivery); `answered`: a fault's extra got its
answer; `abandoned`: a genuine webhook never answered 2xx within the attempts."""
ALREADY_RECEIVED = 409


def attempt_finishes(genuine: bool, status_code: int | None, may_have_arrived: bool) -> bool:
    """A genuine webhook is done once Amana took it (2xx), or said it had it already (409)
    after an earlier attempt that may have arrived unanswered (a timeout, a worker killed
    before it recorded the answer). A fault's extra is done at its first answer, whatever it
    is: that answer is what the fault tests."""
    if status_code is None:
        return False
    if not genuine:
        return True
    return 200 <= status_code < 300 or (status_code == ALREADY_RECEIVED and may_have_arrived)


def judge(
    expected: Mapping[str, Any],
    status_code: int,
    answer: Any,
    sent_numbers: Sequence[str],
    *,
    lenient: bool = False,
    first_answer: Any = None,
) -> tuple[Verdict, str]:
    """Whether Amana's answer is the one `expected` asks for. `lenient` (an earlier attempt
    may have arrived unanswered, so Amana may have it already) also accepts a duplicate where
    an application was expected, and a 409 for the whole webhook. `first_answer`, what Amana
    answered the webhook this one repeats: answering the same again applies nothing."""
    kind = expected["answer"]
    if kind == "items" and lenient and status_code == ALREADY_RECEIVED:
        return "as_expected", "409 to a redelivery: Amana had it from an earlier attempt"
    if kind == "refused":
        if 400 <= status_code < 500:
            return "as_expected", f"refused with {status_code}"
        return "unexpected", f"expected a 4xx refusal, got {status_code}"
    if 400 <= status_code < 500 and kind == "not_applied":
        return "as_expected", f"refused with {status_code}"
    if not 200 <= status_code < 300:
        return "unexpected", f"expected a 2xx answer, got {status_code}"
    try:
        parsed = WebhookAnswer.model_validate(answer)
    except ValidationError:
        return "unexpected", "the 2xx answer is not a WebhookAnswer"
    if kind == "not_applied":
        if first_answer is not None and answer == first_answer:
            return "as_expected", "answered as the first time"
        if parsed.applied == 0:
            return "as_expected", "answered without applying anything"
        return "unexpected", f"applied {parsed.applied} results of a webhook it had seen"
    return _judge_items(expected, parsed, sent_numbers, lenient)


def _judge_items(
    expected: Mapping[str, Any], answer: WebhookAnswer, sent: Sequence[str], lenient: bool
) -> tuple[Verdict, str]:
    answered = {item.payment_number: item for item in answer.results}
    problems: list[str] = []
    missing = [number for number in sent if number not in answered]
    if missing:
        problems.append(f"no outcome for {len(missing)} results (e.g. {missing[0]})")
    for number in sent:
        item = answered.get(number)
        if item is None:
            continue
        outcome = item.outcome if item.exception is None else exception(item.exception)
        acceptable = list(expected["items"].get(number, expected["default"]))
        if lenient and APPLIED in acceptable:
            acceptable.append(DUPLICATE)
        if not _acceptable(outcome, acceptable):
            problems.append(f"{number}: {outcome}, expected {' or '.join(acceptable)}")
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        return "unexpected", shown + more
    return "as_expected", f"{len(sent)} outcomes as expected"


def _acceptable(outcome: str, acceptable: Sequence[str]) -> bool:
    return outcome in acceptable or (
        ANY_EXCEPTION in acceptable and outcome.startswith(ANY_EXCEPTION + ":")
    )


# --- webhook plans -------------------------------------------------------------------------


@dataclass(frozen=True)
class DueResult:
    """A payment whose result fell due, as the provider decided it at acceptance."""

    payment_id: int
    payment_number: str
    amount_minor: int
    currency: str
    status: ResultStatus
    reason_code: str | None
    provider_reference: str
    occurred_at: datetime
    late: bool = False

    def result(
        self, amount_minor: int | None = None, provider_reference: str | None = None
    ) -> PaymentResult:
        return PaymentResult(
            payment_number=self.payment_number,
            status=self.status,
            amount_minor=self.amount_minor if amount_minor is None else amount_minor,
            currency=self.currency,
            provider_reference=provider_reference or self.provider_reference,
            occurred_at=self.occurred_at,
            reason_code=self.reason_code,
        )


GENUINE = "results"
"""The kind of a delivery that carries results for the first time (not a fault's extra)."""


@dataclass
class PlannedDelivery:
    key: int
    webhook_id: str
    kind: str
    results: list[PaymentResult]
    expected: dict[str, Any]
    payment_ids: list[int] = field(default_factory=list)
    fault_id: UUID | None = None
    faults: list[str] = field(default_factory=list)
    signing: dict[str, Any] = field(default_factory=lambda: {"mode": "valid"})
    depends_on: list[int] = field(default_factory=list)
    delay_s: float = 0.0

    @property
    def payment_numbers(self) -> list[str]:
        return [result.payment_number for result in self.results]


@dataclass
class Plan:
    deliveries: list[PlannedDelivery] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)

    @property
    def next_key(self) -> int:
        return len(self.deliveries)

    def add(self, delivery: PlannedDelivery) -> PlannedDelivery:
        assert delivery.key == self.next_key, "planned with next_key, added at once"
        self.deliveries.append(delivery)
        return delivery


@dataclass
class _Specials:
    """Per payment number: the outcomes Amana may answer when they are not `applied`."""

    outcomes: dict[str, list[str]] = field(default_factory=dict)
    amounts: dict[str, int] = field(default_factory=dict)
    conflicts: dict[str, ActiveFault] = field(default_factory=dict)
    injections: list[Injection] = field(default_factory=list)
    """Of faults on single results, logged with the webhook that carries the result."""


def plan_webhooks(
    due: Sequence[DueResult],
    faults: Sequence[ActiveFault],
    results_per_webhook: int,
    new_webhook_id: Callable[[], str],
) -> Plan:
    """Cuts one provider's due results into webhooks of `results_per_webhook` and applies the
    planning faults in force, each as far as its count allows."""
    plan = Plan()
    specials = _payment_faults(due, faults)
    genuine = _genuine_deliveries(due, specials, results_per_webhook, new_webhook_id, plan)
    for delivery in genuine:
        _webhook_faults(delivery, faults, specials, new_webhook_id, plan)
    _reorder(genuine, faults, plan)
    return plan


def _payment_faults(due: Sequence[DueResult], faults: Sequence[ActiveFault]) -> _Specials:
    specials = _Specials()
    for result in due:
        if result.late:
            specials.outcomes[result.payment_number] = list(LATE_OUTCOMES)
    for fault in faults_of(faults, FaultKind.amount_mismatch):
        for result in _untouched_settled(due, specials, fault):
            amount = mismatched_amount(result.amount_minor, int(fault.params["delta_minor"]))
            specials.amounts[result.payment_number] = amount
            specials.outcomes[result.payment_number] = [exception("amount_mismatch")]
            specials.injections.append(
                Injection(fault.id, fault.kind, result.payment_number, detail={"reported": amount})
            )
    for fault in faults_of(faults, FaultKind.conflicting_settlement):
        for result in _untouched_settled(due, specials, fault):
            specials.conflicts[result.payment_number] = fault
            specials.outcomes[result.payment_number] = [APPLIED]
    return specials


def _untouched_settled(
    due: Sequence[DueResult], specials: _Specials, fault: ActiveFault
) -> list[DueResult]:
    """The settled results no other fault touched yet, as many as `fault` may take."""
    eligible = [
        result
        for result in due
        if result.status == "settled"
        and result.payment_number not in specials.outcomes
        and result.payment_number not in specials.conflicts
    ]
    return eligible[: fault.take(len(eligible))] if eligible else []


def _genuine_deliveries(
    due: Sequence[DueResult],
    specials: _Specials,
    results_per_webhook: int,
    new_webhook_id: Callable[[], str],
    plan: Plan,
) -> list[PlannedDelivery]:
    genuine = []
    for start in range(0, len(due), results_per_webhook):
        chunk = due[start : start + results_per_webhook]
        numbers = [result.payment_number for result in chunk]
        delivery = plan.add(
            PlannedDelivery(
                key=plan.next_key,
                webhook_id=new_webhook_id(),
                kind=GENUINE,
                results=[r.result(specials.amounts.get(r.payment_number)) for r in chunk],
                payment_ids=[r.payment_id for r in chunk],
                expected=expect_items(
                    [APPLIED], {n: specials.outcomes[n] for n in numbers if n in specials.outcomes}
                ),
                faults=_kinds_touching(chunk, specials),
            )
        )
        genuine.append(delivery)
    carrier = {number: d.key for d in genuine for number in d.payment_numbers}
    plan.injections.extend(
        replace(injection, delivery_key=carrier[injection.payment_number or ""])
        for injection in specials.injections
    )
    return genuine


def _kinds_touching(chunk: Sequence[DueResult], specials: _Specials) -> list[str]:
    kinds = []
    if any(result.late for result in chunk):
        kinds.append(FaultKind.late_result.value)
    if any(result.payment_number in specials.amounts for result in chunk):
        kinds.append(FaultKind.amount_mismatch.value)
    return kinds


def _webhook_faults(
    genuine: PlannedDelivery,
    faults: Sequence[ActiveFault],
    specials: _Specials,
    new_webhook_id: Callable[[], str],
    plan: Plan,
) -> None:
    for fault in faults:
        if fault.kind is FaultKind.unknown_payment and fault.take():
            _unknown_payment(genuine, fault, new_webhook_id, plan)
        elif fault.kind in (FaultKind.bad_signature, FaultKind.stale_timestamp) and fault.take():
            signing = (
                {"mode": str(fault.params.get("variant", "wrong_secret"))}
                if fault.kind is FaultKind.bad_signature
                else {"mode": "stale", "age_s": float(fault.params.get("age_s", 600))}
            )
            extra = _extra(plan, genuine, fault, genuine.webhook_id, expect_refusal(), signing)
            genuine.depends_on.append(extra.key)  # the forgery arrives first
        elif fault.kind is FaultKind.duplicate_webhook and fault.take():
            extra = _extra(plan, genuine, fault, genuine.webhook_id, expect_nothing_applied())
            extra.depends_on.append(genuine.key)
        elif fault.kind is FaultKind.replay and fault.take():
            extra = _extra(
                plan,
                genuine,
                fault,
                genuine.webhook_id,
                expect_nothing_applied(),
                {"mode": "replay"},
            )
            extra.depends_on.append(genuine.key)
            extra.delay_s = float(fault.params.get("delay_s", 0))
        elif fault.kind is FaultKind.duplicate_results and fault.take():
            special = {n: [DUPLICATE, ANY_EXCEPTION] for n in genuine.expected["items"]}
            extra = _extra(
                plan, genuine, fault, new_webhook_id(), expect_items([DUPLICATE], special)
            )
            extra.depends_on.append(genuine.key)
    _conflicting_settlements(genuine, specials, new_webhook_id, plan)


def _extra(
    plan: Plan,
    genuine: PlannedDelivery,
    fault: ActiveFault,
    webhook_id: str,
    expected: dict[str, Any],
    signing: dict[str, Any] | None = None,
) -> PlannedDelivery:
    """A fault's own delivery of the genuine webhook's results."""
    extra = plan.add(
        PlannedDelivery(
            key=plan.next_key,
            webhook_id=webhook_id,
            kind=fault.kind.value,
            results=list(genuine.results),
            expected=expected,
            fault_id=fault.id,
            faults=[fault.kind.value],
            signing=signing or {"mode": "valid"},
        )
    )
    plan.injections.append(
        Injection(fault.id, fault.kind, delivery_key=extra.key, detail={"of": genuine.webhook_id})
    )
    return extra


def _unknown_payment(
    genuine: PlannedDelivery, fault: ActiveFault, new_webhook_id: Callable[[], str], plan: Plan
) -> None:
    """A result for a payment number Amana never issued, inside the genuine webhook when it
    has room (Amana must apply the others), else in a webhook of its own."""
    template = genuine.results[0]
    number = f"UNKNOWN-{genuine.webhook_id[-12:].upper()}"
    unknown = template.model_copy(
        update={"payment_number": number, "provider_reference": f"SBX-UNK-{number[-12:]}"}
    )
    expected = [exception("unknown_payment")]
    if len(genuine.results) < MAX_RESULTS_PER_WEBHOOK:
        genuine.results.append(unknown)
        genuine.expected["items"][number] = expected
        genuine.faults.append(fault.kind.value)
        target = genuine
    else:
        target = plan.add(
            PlannedDelivery(
                key=plan.next_key,
                webhook_id=new_webhook_id(),
                kind=fault.kind.value,
                results=[unknown],
                expected=expect_items(expected),
                fault_id=fault.id,
                faults=[fault.kind.value],
            )
        )
    plan.injections.append(Injection(fault.id, fault.kind, number, delivery_key=target.key))


def _conflicting_settlements(
    genuine: PlannedDelivery,
    specials: _Specials,
    new_webhook_id: Callable[[], str],
    plan: Plan,
) -> None:
    """A second settlement, under another reference, of settled payments of this webhook:
    one webhook per fault, after the genuine one."""
    by_fault: dict[UUID, list[PaymentResult]] = {}
    faults: dict[UUID, ActiveFault] = {}
    for result in genuine.results:
        fault = specials.conflicts.get(result.payment_number)
        if fault is not None:
            faults[fault.id] = fault
            conflicting = result.model_copy(
                update={"provider_reference": f"{result.provider_reference}-C"}
            )
            by_fault.setdefault(fault.id, []).append(conflicting)
    for fault_id, results in by_fault.items():
        extra = plan.add(
            PlannedDelivery(
                key=plan.next_key,
                webhook_id=new_webhook_id(),
                kind=FaultKind.conflicting_settlement.value,
                results=results,
                expected=expect_items([exception("conflicting_settlement")]),
                fault_id=fault_id,
                faults=[FaultKind.conflicting_settlement.value],
                depends_on=[genuine.key],
            )
        )
        for result in results:
            plan.injections.append(
                Injection(fault_id, faults[fault_id].kind, result.payment_number, extra.key)
            )


def _reorder(genuine: list[PlannedDelivery], faults: Sequence[ActiveFault], plan: Plan) -> None:
    """The webhooks are delivered last first, each waiting for the one planned after it, and
    their results shuffled."""
    for fault in faults_of(faults, FaultKind.reorder):
        chained = genuine[: fault.take(len(genuine), at_least=2)] if len(genuine) >= 2 else []
        for position, delivery in enumerate(chained):
            if position + 1 < len(chained):
                delivery.depends_on.append(chained[position + 1].key)
            seeded(fault.seed, fault.id, delivery.webhook_id).shuffle(delivery.results)
            delivery.faults.append(fault.kind.value)
            plan.injections.append(
                Injection(
                    fault.id, fault.kind, delivery_key=delivery.key, detail={"rank": position}
                )
            )
        genuine = genuine[len(chained) :]


# --- signing -------------------------------------------------------------------------------

WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/]+={0,2}")
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def webhook_secret_problem(secret: str) -> str | None:
    """Why `secret` is not a Standard Webhooks secret (`whsec_` + base64 of 24-64 bytes)."""
    if not WEBHOOK_SECRET.fullmatch(secret):
        return "must be whsec_ followed by base64"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        return "must be whsec_ followed by valid base64"
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        return f"must hold {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, holds {len(key)}"
    return None


FORGING_SECRET = "whsec_" + base64.b64encode(b"not-the-secret-amana-gave-us!!").decode()
STALE_AFTER_S = 300


@dataclass(frozen=True)
class SignedRequest:
    headers: dict[str, str]
    body: bytes


def signed_request(
    signing: Mapping[str, Any],
    secret: str,
    webhook_id: str,
    body: bytes,
    now: datetime,
    earlier_headers: Mapping[str, str] | None = None,
) -> SignedRequest:
    """The headers (and body) to send. `signing["mode"]`: `valid`; `wrong_secret`;
    `tampered_body` (a body changed after signing); `missing` (no signature header);
    `malformed` (a signature header that is not one); `stale` (validly signed `age_s`
    seconds ago); `replay` (the very headers of an earlier delivery, `earlier_headers`)."""
    mode = signing.get("mode", "valid")
    if mode == "replay" and earlier_headers:
        return SignedRequest(dict(earlier_headers), body)
    timestamp = now - timedelta(seconds=float(signing.get("age_s", 0))) if mode == "stale" else now
    key = FORGING_SECRET if mode == "wrong_secret" else secret
    signature = Webhook(key).sign(webhook_id, timestamp, body.decode())
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }
    if mode == "missing":
        del headers["webhook-signature"]
    elif mode == "malformed":
        headers["webhook-signature"] = "v1,this-is-not-a-signature"
    elif mode == "tampered_body":
        body = body.replace(b'"amount_minor":', b'"amount_minor":1', 1)
    return SignedRequest(headers, body)


# --- retries -------------------------------------------------------------------------------


def retry_delay_s(attempt: int, base_s: float, cap_s: float, jitter: float) -> float:
    """Exponential backoff after the `attempt`-th failure, with `jitter` in [0, 1) spreading it
    over 75-125 % so that refused deliveries do not come back together."""
    exponential = min(cap_s, base_s * 2.0 ** max(attempt - 1, 0))
    return exponential * (0.75 + 0.5 * jitter)
