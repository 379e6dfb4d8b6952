"""The pure rules, on hand-computed cases."""

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest

from amana_contracts.psp import PaymentResult
from disbursement.domain import (
    Anomaly,
    Applied,
    BatchPlan,
    Breaker,
    BreakerState,
    Duplicate,
    InvalidTransition,
    PaymentState,
    Status,
    Totals,
    apply_result,
    backoff_delay,
    compose_batches,
    dispatch,
    expected_fee,
    expire,
    is_payment_number,
    is_retryable,
    is_retryable_http_status,
    major_amount,
    pay_by,
    payment_number,
    reconcile,
)

PROVIDER = UUID("01930000-0000-7000-8000-0000000000a1")
OTHER = UUID("01930000-0000-7000-8000-0000000000b2")
PAYMENT = UUID("01930000-0000-7000-8000-0000000000c3")
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def state(status: Status = Status.sent, reference: str | None = None) -> PaymentState:
    return PaymentState(PAYMENT, PROVIDER, status, 250_000, "KES", reference)


def result(
    status: str = "settled",
    reference: str = "MP-1",
    amount: int = 250_000,
    currency: str = "KES",
    reason: str | None = None,
) -> PaymentResult:
    return PaymentResult(
        payment_number=payment_number(1),
        status=status,
        amount_minor=amount,
        currency=currency,
        provider_reference=reference,
        occurred_at=NOW,
        reason_code=reason,
    )


# --- payment numbers -------------------------------------------------------------------------


def test_payment_numbers_carry_mod_97_10_check_digits() -> None:
    # "P0000000001": P reads as 25, so 250000000001 * 100 mod 97 = 89 and 98 - 89 = 9 -> "09".
    assert payment_number(1) == "P000000000109"
    # 250000000042 * 100 mod 97 = 18 -> 98 - 18 = 80.
    assert payment_number(42) == "P000000004280"
    assert is_payment_number("P000000004280")


@pytest.mark.parametrize(
    "typo",
    [
        "P000000004290",  # one digit wrong
        "P000000002480",  # two adjacent digits swapped
        "P00000000428",  # a digit missing
        "Q000000004280",  # another letter
        "P00000000428\u0660",  # a non-ASCII digit (Arabic-Indic zero)
        "",
    ],
)
def test_a_mistyped_payment_number_is_refused(typo: str) -> None:
    assert not is_payment_number(typo)


def test_payment_sequences_are_bounded() -> None:
    with pytest.raises(ValueError):
        payment_number(0)
    with pytest.raises(ValueError):
        payment_number(10**10)


# --- state machine ---------------------------------------------------------------------------


def test_dispatch_and_expiry_move_only_open_payments() -> None:
    assert dispatch(Status.pending) is Status.sent
    assert dispatch(Status.sent) is Status.sent
    assert expire(Status.pending) is Status.expired
    assert expire(Status.sent) is Status.expired
    for terminal in (Status.settled, Status.failed, Status.expired, Status.reversed):
        with pytest.raises(InvalidTransition):
            expire(terminal)
        with pytest.raises(InvalidTransition):
            dispatch(terminal)


@pytest.mark.parametrize("status", [Status.pending, Status.sent])
def test_an_open_payment_settles_or_fails(status: Status) -> None:
    settled = apply_result(state(status), result(), PROVIDER)
    failed = apply_result(state(status), result("failed", reason="AC04"), PROVIDER)

    assert settled == Applied(state(Status.settled, "MP-1"))
    assert isinstance(failed, Applied)
    assert failed.state.status is Status.failed
    assert failed.state.reason_code == "AC04"


def test_the_same_result_twice_is_a_duplicate() -> None:
    assert apply_result(state(Status.settled, "MP-1"), result(), PROVIDER) == Duplicate()
    failed = state(Status.failed, "MP-1")
    assert apply_result(failed, result("failed", reason="AC04"), PROVIDER) == Duplicate()


@pytest.mark.parametrize(
    ("current", "incoming", "kind"),
    [
        (state(Status.settled, "MP-1"), result(reference="MP-2"), "conflicting_settlement"),
        (state(Status.failed, "MP-1"), result(), "result_after_terminal"),
        (state(Status.settled, "MP-1"), result("failed", reason="AC01"), "result_after_terminal"),
        (state(Status.expired), result(), "result_after_expiry"),
        (state(Status.expired), result("failed", reason="AC01"), "result_after_expiry"),
        (state(Status.sent), result("reversed", reason="AC04"), "invalid_transition"),
        (state(Status.sent), result(amount=250_001), "amount_mismatch"),
        (state(Status.sent), result(currency="UGX"), "currency_mismatch"),
        (state(Status.sent), result("failed", reason="ZZ99"), "unknown_reason_code"),
        (state(Status.sent), result("failed"), "unknown_reason_code"),
        (None, result(), "unknown_payment"),
    ],
)
def test_anomalies_are_named_never_applied(
    current: PaymentState | None, incoming: PaymentResult, kind: str
) -> None:
    decision = apply_result(current, incoming, PROVIDER)

    assert isinstance(decision, Anomaly)
    assert decision.kind == kind


def test_a_result_for_another_providers_payment_is_an_anomaly() -> None:
    decision = apply_result(state(), result(), OTHER)

    assert decision == Anomaly("other_provider", "the payment belongs to another provider")


def test_a_settled_payment_may_be_reversed_once() -> None:
    reversal = result("reversed", "RV-9", reason="AC06")
    reversed_ = apply_result(state(Status.settled, "MP-1"), reversal, PROVIDER)

    assert isinstance(reversed_, Applied)
    assert reversed_.state.status is Status.reversed
    assert reversed_.state.provider_reference == "MP-1", "the settlement's reference stays"
    assert apply_result(reversed_.state, reversal, PROVIDER) == Duplicate()
    assert isinstance(apply_result(reversed_.state, result(), PROVIDER), Anomaly)


# --- reasons, window, fees, amounts ----------------------------------------------------------


def test_reason_codes_say_whether_the_next_cycle_may_retry() -> None:
    assert is_retryable("AM04")  # the provider's float ran dry
    assert is_retryable("NCOL")  # the recipient did not come to the pay point
    assert is_retryable("EXPD")
    assert not is_retryable("AC04")  # closed account
    assert not is_retryable("MD07")  # deceased
    assert not is_retryable("UNKNOWN")


def test_a_payment_may_be_paid_until_the_end_of_the_windows_last_day() -> None:
    assert pay_by(date(2026, 12, 31)) == datetime(2027, 1, 1, tzinfo=UTC)


def test_fees_round_half_up() -> None:
    # 30.00 fixed + 1.5 % of 2,500.00 = 30.00 + 37.50
    assert expected_fee(250_000, 3_000, 150) == 6_750
    # 1.5 % of 0.33 = 0.495 -> 0 minor units ... 0.0495 rounds down, 1.5 % of 0.34 = 0.51 -> 1
    assert expected_fee(33, 0, 150) == 0
    assert expected_fee(34, 0, 150) == 1


def test_major_amounts_follow_the_currencys_minor_unit() -> None:
    assert major_amount(250_005, "KES") == "2500.05"
    assert major_amount(7, "KES") == "0.07"
    assert major_amount(50_000, "UGX") == "50000"
    assert major_amount(1_234, "JOD") == "1.234"


# --- batches -------------------------------------------------------------------------------


def test_batches_are_cut_per_provider_in_order() -> None:
    payments = [(PROVIDER, 100), (OTHER, 5), (PROVIDER, 200), (PROVIDER, 300), (OTHER, 7)]

    plans = compose_batches(payments, batch_size=2)

    assert sorted(plans, key=lambda p: (str(p.provider_id), p.sequence)) == [
        BatchPlan(PROVIDER, 1, 2, 300),
        BatchPlan(PROVIDER, 2, 1, 300),
        BatchPlan(OTHER, 1, 2, 12),
    ]


# --- dispatch ------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_with_full_jitter() -> None:
    assert backoff_delay(1, base_s=2, cap_s=60, jitter=0.5) == 1.0
    assert backoff_delay(3, base_s=2, cap_s=60, jitter=0.5) == 4.0
    assert backoff_delay(10, base_s=2, cap_s=60, jitter=0.5) == 30.0
    assert backoff_delay(4, base_s=2, cap_s=60, jitter=0.0) == 0.0
    with pytest.raises(ValueError):
        backoff_delay(0, 2, 60, 0.5)


def test_only_transient_http_answers_are_retried() -> None:
    assert is_retryable_http_status(503)
    assert is_retryable_http_status(429)
    assert is_retryable_http_status(408)
    assert not is_retryable_http_status(400)
    assert not is_retryable_http_status(401)


def test_the_breaker_opens_after_the_threshold_and_tries_once_after_the_cooldown() -> None:
    cooldown = timedelta(seconds=60)
    breaker = Breaker()
    for _ in range(2):
        breaker = breaker.failed(NOW, threshold=3)
    assert breaker.state is BreakerState.closed
    assert breaker.admits(NOW, cooldown) == breaker

    breaker = breaker.failed(NOW, threshold=3)
    assert breaker.state is BreakerState.open
    assert breaker.admits(NOW + timedelta(seconds=59), cooldown) is None

    trial = breaker.admits(NOW + timedelta(seconds=60), cooldown)
    assert trial is not None and trial.state is BreakerState.half_open
    assert trial.admits(NOW + timedelta(seconds=61), cooldown) is None, "one trial at a time"
    assert trial.failed(NOW, threshold=3).state is BreakerState.open
    assert trial.succeeded() == Breaker()


# --- reconciliation -------------------------------------------------------------------------


def test_the_reconciliation_equality() -> None:
    payroll = Totals(6, 600)
    rows = [("settled", 2, 200), ("failed", 1, 100), ("expired", 1, 100), ("sent", 1, 100)]

    open_ = reconcile(payroll, [*rows, ("pending", 1, 100)])
    assert open_.balanced and not open_.complete
    assert open_.open == Totals(2, 200)

    done = reconcile(
        payroll,
        [("settled", 2, 200), ("failed", 1, 100), ("expired", 2, 200), ("reversed", 1, 100)],
    )
    assert done.balanced and done.complete
    assert done.accounted == Totals(6, 600)

    missing = reconcile(payroll, rows)
    assert not missing.balanced, "a payment missing breaks the equality"
