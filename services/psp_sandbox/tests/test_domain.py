"""The sandbox's pure rules, on hand-computed cases."""

import base64
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from amana_contracts.psp import PaymentBatch, ResultOutcome, WebhookAnswer
from psp_sandbox.domain import (
    DEFAULT_REASON_MIX,
    GENUINE,
    ActiveFault,
    DueResult,
    FaultKind,
    applicable_reasons,
    attempt_finishes,
    batch_errors,
    batch_fingerprint,
    decide_outcome,
    decide_request,
    expect_items,
    expect_nothing_applied,
    expect_refusal,
    judge,
    mismatched_amount,
    plan_webhooks,
    result_due_at,
    retry_delay_s,
    signed_request,
    webhook_secret_problem,
)

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


# --- outcomes ------------------------------------------------------------------------------


def test_reasons_that_cannot_happen_with_the_mechanism_are_not_drawn() -> None:
    assert set(applicable_reasons(DEFAULT_REASON_MIX, "cash_pay_point")) == {
        "AM04",
        "BE01",
        "MD07",
        "NCOL",
    }
    assert set(applicable_reasons(DEFAULT_REASON_MIX, "bank_transfer")) == {
        "AC01",
        "AC04",
        "AC06",
        "AM04",
        "BE01",
        "MD07",
    }


def test_an_unlisted_code_fits_every_mechanism_and_a_mix_that_fits_none_is_used_whole() -> None:
    assert applicable_reasons({"XX01": 3, "AC01": 1}, "cash_pay_point") == {"XX01": 3}
    assert applicable_reasons({"AC01": 2, "AC04": 0}, "voucher") == {"AC01": 2}


def test_outcomes_follow_the_failure_rate_and_the_seed() -> None:
    settled = decide_outcome(1, "P1", "mobile_money", 0.0, DEFAULT_REASON_MIX)
    failed = decide_outcome(1, "P1", "mobile_money", 1.0, DEFAULT_REASON_MIX)

    assert (settled.status, settled.reason_code) == ("settled", None)
    assert failed.status == "failed" and failed.reason_code in DEFAULT_REASON_MIX
    assert settled.provider_reference == failed.provider_reference  # drawn first, same seed
    assert settled.provider_reference.startswith("SBX-") and len(settled.provider_reference) == 19
    assert decide_outcome(1, "P1", "mobile_money", 0.5, DEFAULT_REASON_MIX) == decide_outcome(
        1, "P1", "mobile_money", 0.5, DEFAULT_REASON_MIX
    )


def test_the_reason_mix_weights_the_reasons() -> None:
    reasons = [
        decide_outcome(3, f"P{i}", "mobile_money", 1.0, {"AC01": 3, "AC04": 1}).reason_code
        for i in range(2000)
    ]

    assert set(reasons) == {"AC01", "AC04"}
    assert 0.70 <= reasons.count("AC01") / 2000 <= 0.80


def test_a_result_is_due_after_the_delay_or_late_after_the_payment_window() -> None:
    pay_by = NOON + timedelta(minutes=10)

    assert result_due_at(NOON, 30, pay_by) == NOON + timedelta(seconds=30)
    assert result_due_at(NOON, 30, pay_by, late_by_s=60) == pay_by + timedelta(seconds=60)
    assert result_due_at(NOON, 3600, pay_by, late_by_s=60) == NOON + timedelta(hours=1)


# --- batches -------------------------------------------------------------------------------


def batch(**overrides: Any) -> PaymentBatch:
    payment = {
        "payment_number": "P1",
        "amount_minor": 100,
        "currency": "KES",
        "mechanism": "mobile_money",
        "recipient": {"name": "R"},
        "pay_by": "2026-03-09T00:00:00+00:00",
    }
    body: dict[str, Any] = {
        "batch_id": str(UUID(int=1)),
        "provider_id": str(UUID(int=2)),
        "currency": "KES",
        "payment_count": 2,
        "total_amount_minor": 300,
        "payments": [payment, payment | {"payment_number": "P2", "amount_minor": 200}],
    }
    return PaymentBatch.model_validate(body | overrides)


def test_a_consistent_batch_has_no_errors() -> None:
    assert batch_errors(batch(), UUID(int=2)) == []


def test_batch_errors_name_each_field() -> None:
    wrong = batch(payment_count=3, total_amount_minor=301, currency="UGX")

    fields = [error.field for error in batch_errors(wrong, UUID(int=9))]

    assert fields == [
        "provider_id",
        "payment_count",
        "total_amount_minor",
        "payments.0.currency",
        "payments.1.currency",
    ]


def test_the_fingerprint_ignores_spelling_but_not_content() -> None:
    same = batch()
    spelled = PaymentBatch.model_validate_json(
        json.dumps(json.loads(same.model_dump_json()), indent=2).replace("+00:00", "Z")
    )
    other = batch(total_amount_minor=301)

    assert batch_fingerprint(same) == batch_fingerprint(spelled)
    assert batch_fingerprint(same) != batch_fingerprint(other)


# --- request faults ------------------------------------------------------------------------


def fault(kind: FaultKind, remaining: int | None = 1, **params: Any) -> ActiveFault:
    return ActiveFault(UUID(int=len(params) + 7), kind, params, remaining, seed=1)


def test_an_outage_answers_503_until_its_count_is_used() -> None:
    outage = fault(FaultKind.outage, 2, mode="503", retry_after_s=9)

    decisions = [decide_request([outage], {}) for _ in range(3)]

    assert [d.answer for d in decisions] == ["unavailable", "unavailable", None]
    assert decisions[0].retry_after_s == 9
    assert outage.taken == 2


def test_a_refuse_outage_is_the_servers_business_not_the_routes() -> None:
    assert decide_request([fault(FaultKind.outage, mode="refuse")], {}).answer is None


def test_slow_and_500_combine_and_the_rate_is_drawn_per_call() -> None:
    slow = fault(FaultKind.slow, None, delay_s=2)
    error = ActiveFault(UUID(int=5), FaultKind.error_500, {"rate": 0.5}, None, seed=4)

    decisions = [decide_request([slow, error], {error.id: n}) for n in range(200)]

    assert all(d.delay_s == 2 for d in decisions)
    errors = sum(d.answer == "error" for d in decisions)
    assert 70 <= errors <= 130
    assert decisions == [decide_request([slow, error], {error.id: n}) for n in range(200)]


def test_a_500_after_accept_is_a_lost_answer() -> None:
    lost = fault(FaultKind.error_500, rate=1.0, after_accept=True)

    assert decide_request([lost], {}).answer == "error_after_accept"


def test_a_mismatched_amount_is_off_by_delta_and_never_negative() -> None:
    assert mismatched_amount(5000, -100) == 4900
    assert mismatched_amount(50, -100) == 150
    assert mismatched_amount(50, 7) == 57


# --- plans ---------------------------------------------------------------------------------


def due(
    count: int, *, failed: frozenset[int] = frozenset(), late: frozenset[int] = frozenset()
) -> list[DueResult]:
    return [
        DueResult(
            payment_id=i,
            payment_number=f"P{i}",
            amount_minor=1000,
            currency="KES",
            status="failed" if i in failed else "settled",
            reason_code="AC01" if i in failed else None,
            provider_reference=f"SBX-{i}",
            occurred_at=NOON,
            late=i in late,
        )
        for i in range(count)
    ]


def ids() -> Any:
    counter = itertools.count()
    return lambda: f"msg_{next(counter)}"


def test_due_results_are_cut_into_webhooks_of_the_set_size() -> None:
    plan = plan_webhooks(due(5), [], 2, ids())

    assert [(d.webhook_id, d.kind, d.payment_numbers) for d in plan.deliveries] == [
        ("msg_0", GENUINE, ["P0", "P1"]),
        ("msg_1", GENUINE, ["P2", "P3"]),
        ("msg_2", GENUINE, ["P4"]),
    ]
    assert plan.deliveries[0].payment_ids == [0, 1]
    assert plan.deliveries[0].expected == expect_items(["applied"])
    assert plan.injections == []


def test_extras_before_and_after_the_genuine_webhook() -> None:
    forged = fault(FaultKind.bad_signature, 1, variant="missing")
    duplicate = fault(FaultKind.duplicate_webhook, 1)
    replay = fault(FaultKind.replay, 1, delay_s=3)

    plan = plan_webhooks(due(4), [forged, duplicate, replay], 2, ids())

    first, second, bad, dup, rep = plan.deliveries
    assert (first.kind, second.kind) == (GENUINE, GENUINE)
    assert (bad.webhook_id, bad.signing, bad.expected) == (
        "msg_0",
        {"mode": "missing"},
        expect_refusal(),
    )
    assert first.depends_on == [bad.key]
    assert (dup.webhook_id, dup.depends_on, dup.expected) == (
        "msg_0",
        [first.key],
        expect_nothing_applied(),
    )
    assert (rep.webhook_id, rep.signing, rep.depends_on, rep.delay_s) == (
        "msg_0",
        {"mode": "replay"},
        [first.key],
        3,
    )
    assert second.depends_on == []  # each fault had a count of one
    assert [i.delivery_key for i in plan.injections] == [bad.key, dup.key, rep.key]


def test_payment_faults_take_settled_results_no_other_fault_touched() -> None:
    mismatch = fault(FaultKind.amount_mismatch, 1, delta_minor=-10)
    conflict = fault(FaultKind.conflicting_settlement, 2)
    results = due(6, failed=frozenset({0}), late=frozenset({1}))

    plan = plan_webhooks(results, [mismatch, conflict], 10, ids())

    genuine, conflicting = plan.deliveries
    amounts = {r.payment_number: r.amount_minor for r in genuine.results}
    assert amounts["P2"] == 990  # P0 failed, P1 late: P2 is the first untouched settled
    assert genuine.expected["items"] == {
        "P1": ["exception:result_after_expiry", "exception:result_after_terminal"],
        "P2": ["exception:amount_mismatch"],
        "P3": ["applied"],
        "P4": ["applied"],
    }
    assert conflicting.payment_numbers == ["P3", "P4"]
    assert [r.provider_reference for r in conflicting.results] == ["SBX-3-C", "SBX-4-C"]
    assert conflicting.expected == expect_items(["exception:conflicting_settlement"])
    assert conflicting.depends_on == [genuine.key]
    assert genuine.faults == ["late_result", "amount_mismatch"]
    assert [(i.kind, i.payment_number, i.delivery_key) for i in plan.injections] == [
        (FaultKind.amount_mismatch, "P2", genuine.key),
        (FaultKind.conflicting_settlement, "P3", conflicting.key),
        (FaultKind.conflicting_settlement, "P4", conflicting.key),
    ]


def test_an_unknown_payment_is_added_to_the_genuine_webhook() -> None:
    plan = plan_webhooks(due(2), [fault(FaultKind.unknown_payment, 1)], 10, ids())

    (genuine,) = plan.deliveries
    assert genuine.payment_numbers == ["P0", "P1", "UNKNOWN-MSG_0"]
    assert genuine.expected["items"] == {"UNKNOWN-MSG_0": ["exception:unknown_payment"]}
    assert genuine.payment_ids == [0, 1]


def test_reordered_webhooks_wait_for_the_next_one() -> None:
    reorder = fault(FaultKind.reorder, 3)

    plan = plan_webhooks(due(8), [reorder], 2, ids())

    deps = [d.depends_on for d in plan.deliveries]
    assert deps == [[1], [2], [], []]  # 2 before 1 before 0; the fourth is not reordered
    assert reorder.taken == 3
    assert sorted(r.payment_number for r in plan.deliveries[0].results) == ["P0", "P1"]


def test_a_reorder_needs_two_webhooks_and_waits_for_a_round_that_has_them() -> None:
    reorder = fault(FaultKind.reorder, 2)

    plan = plan_webhooks(due(2), [reorder], 2, ids())

    assert plan.deliveries[0].depends_on == [] and reorder.taken == 0


def test_duplicate_results_come_under_a_new_id_expecting_duplicates() -> None:
    plan = plan_webhooks(
        due(2, late=frozenset({0})), [fault(FaultKind.duplicate_results, 1)], 5, ids()
    )

    genuine, duplicate = plan.deliveries
    assert duplicate.webhook_id != genuine.webhook_id
    assert duplicate.expected == expect_items(["duplicate"], {"P0": ["duplicate", "exception"]})


def test_a_time_bounded_fault_applies_to_every_webhook() -> None:
    plan = plan_webhooks(due(6), [fault(FaultKind.duplicate_webhook, None)], 2, ids())

    assert [d.kind for d in plan.deliveries].count("duplicate_webhook") == 3


# --- verdicts ------------------------------------------------------------------------------


def answer(*outcomes: tuple[str, str, str | None]) -> dict[str, Any]:
    results = [ResultOutcome(payment_number=n, outcome=o, exception=e) for n, o, e in outcomes]
    return WebhookAnswer(
        received=len(results),
        applied=sum(r.outcome == "applied" for r in results),
        duplicates=sum(r.outcome == "duplicate" for r in results),
        exceptions=sum(r.outcome == "exception" for r in results),
        results=results,
    ).model_dump(mode="json")


def test_a_refusal_is_expected_as_a_4xx() -> None:
    assert judge(expect_refusal(), 401, None, [])[0] == "as_expected"
    assert judge(expect_refusal(), 200, answer(), []) == (
        "unexpected",
        "expected a 4xx refusal, got 200",
    )
    assert judge(expect_refusal(), 500, None, [])[0] == "unexpected"


def test_a_seen_webhook_may_be_refused_or_answered_without_applying() -> None:
    expected = expect_nothing_applied()

    assert judge(expected, 409, None, ["P1"])[0] == "as_expected"
    assert judge(expected, 200, answer(("P1", "duplicate", None)), ["P1"])[0] == "as_expected"
    assert judge(expected, 200, answer(("P1", "applied", None)), ["P1"]) == (
        "unexpected",
        "applied 1 results of a webhook it had seen",
    )


def test_a_seen_webhook_may_be_answered_as_the_first_time() -> None:
    first = answer(("P1", "applied", None))

    verdict = judge(expect_nothing_applied(), 200, first, ["P1"], first_answer=first)

    assert verdict == ("as_expected", "answered as the first time")
    assert judge(expect_nothing_applied(), 200, first, ["P1"], first_answer=answer())[0] == (
        "unexpected"
    )


def test_each_result_is_judged_against_its_expected_outcome() -> None:
    expected = expect_items(["applied"], {"P2": ["exception:amount_mismatch"]})
    good = answer(("P1", "applied", None), ("P2", "exception", "amount_mismatch"))
    wrong = answer(("P1", "applied", None), ("P2", "applied", None))
    short = answer(("P1", "applied", None))

    assert judge(expected, 200, good, ["P1", "P2"])[0] == "as_expected"
    assert judge(expected, 200, wrong, ["P1", "P2"]) == (
        "unexpected",
        "P2: applied, expected exception:amount_mismatch",
    )
    assert judge(expected, 200, short, ["P1", "P2"]) == (
        "unexpected",
        "no outcome for 1 results (e.g. P2)",
    )
    assert judge(expected, 200, {"ok": True}, ["P1"]) == (
        "unexpected",
        "the 2xx answer is not a WebhookAnswer",
    )
    assert judge(expected, 503, None, ["P1"])[0] == "unexpected"


def test_after_an_unanswered_attempt_a_duplicate_counts_as_applied() -> None:
    expected = expect_items(["applied"])
    duplicate = answer(("P1", "duplicate", None))

    assert judge(expected, 200, duplicate, ["P1"])[0] == "unexpected"
    assert judge(expected, 200, duplicate, ["P1"], lenient=True)[0] == "as_expected"


def test_a_409_to_a_redelivery_means_amana_had_it() -> None:
    expected = expect_items(["applied"])

    assert judge(expected, 409, None, ["P1"], lenient=True)[0] == "as_expected"
    assert judge(expected, 409, None, ["P1"])[0] == "unexpected"


def test_when_an_attempt_finishes_a_delivery() -> None:
    assert attempt_finishes(True, 200, False)
    assert not attempt_finishes(True, 409, False)  # retried: nothing says Amana has it
    assert attempt_finishes(True, 409, True)
    assert not attempt_finishes(True, 500, True)
    assert not attempt_finishes(True, None, True)
    assert attempt_finishes(False, 401, False)  # a fault's extra: its first answer
    assert not attempt_finishes(False, None, False)


def test_any_exception_may_be_expected() -> None:
    expected = expect_items(["duplicate", "exception"])

    assert judge(expected, 200, answer(("P1", "exception", "other_provider")), ["P1"])[0] == (
        "as_expected"
    )


# --- signing -------------------------------------------------------------------------------


def headers_and_body(mode: str, **signing: Any) -> tuple[dict[str, str], bytes]:
    request = signed_request(
        {"mode": mode, **signing}, SECRET, "msg_1", b'{"amount_minor":500}', datetime.now(UTC)
    )
    return request.headers, request.body


def test_a_valid_signature_verifies_with_standardwebhooks() -> None:
    headers, body = headers_and_body("valid")

    assert Webhook(SECRET).verify(body, headers) == {"amount_minor": 500}
    assert headers["webhook-id"] == "msg_1"


@pytest.mark.parametrize(
    ("mode", "signing"),
    [
        ("wrong_secret", {}),
        ("tampered_body", {}),
        ("missing", {}),
        ("stale", {"age_s": 301}),
        ("stale", {"age_s": -301}),
    ],
)
def test_forgeries_do_not_verify(mode: str, signing: dict[str, Any]) -> None:
    headers, body = headers_and_body(mode, **signing)

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers)


def test_a_malformed_signature_does_not_verify() -> None:
    headers, body = headers_and_body("malformed")

    with pytest.raises((WebhookVerificationError, ValueError)):
        Webhook(SECRET).verify(body, headers)


def test_a_replay_sends_the_earlier_headers_verbatim() -> None:
    earlier = {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"}

    request = signed_request({"mode": "replay"}, SECRET, "msg_1", b"{}", NOON, earlier)

    assert request.headers == earlier


def test_webhook_secrets_are_checked_for_shape_and_length() -> None:
    assert webhook_secret_problem(SECRET) is None
    assert webhook_secret_problem("whsec_c2hvcnQ=") == "must hold 24-64 bytes, holds 5"
    assert webhook_secret_problem("sk_live_abc") == "must be whsec_ followed by base64"
    assert webhook_secret_problem("whsec_YWJj=") is not None  # bad padding


# --- retries -------------------------------------------------------------------------------


def test_retries_back_off_exponentially_with_jitter_up_to_the_cap() -> None:
    assert retry_delay_s(1, 1.0, 300, 0.5) == 1.0
    assert retry_delay_s(4, 1.0, 300, 0.5) == 8.0
    assert retry_delay_s(4, 1.0, 300, 0.0) == 6.0
    assert retry_delay_s(20, 1.0, 300, 0.5) == 300
