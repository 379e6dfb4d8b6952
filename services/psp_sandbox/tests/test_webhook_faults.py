"""Each webhook fault, applied as far as its bound allows, logged, and judged: the receiver
stands in for Amana (it verifies signatures with standardwebhooks, sees each webhook-id once
and answers per result), and the delivery log must say that it refused or flagged exactly
the injected deliveries and results."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from psp_sandbox.domain import seeded

from .harness import Sandbox
from .support import all_pages, put_faults


def by_kind(deliveries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for delivery in deliveries:
        kinds.setdefault(delivery["kind"], []).append(delivery)
    return kinds


def assert_all_as_expected(deliveries: list[dict[str, Any]]) -> None:
    unexpected = [
        (d["kind"], d["verdict_detail"]) for d in deliveries if d["verdict"] != "as_expected"
    ]
    assert unexpected == []


async def injections(sandbox: Sandbox, **filters: Any) -> list[dict[str, Any]]:
    return await all_pages(sandbox.client, "/sandbox/injections", **filters)


async def test_duplicate_webhooks_repeat_the_webhook_id_and_are_not_applied(
    sandbox: Sandbox,
) -> None:
    provider_id = await sandbox.provider(results_per_webhook=10)
    (fault,) = await put_faults(sandbox.client, {"kind": "duplicate_webhook", "count": 2})
    await sandbox.send_batch(provider_id, 30)

    deliveries = by_kind(await sandbox.settled(deliveries=5))

    genuine, duplicates = deliveries["results"], deliveries["duplicate_webhook"]
    assert len(genuine) == 3 and len(duplicates) == 2
    assert {d["webhook_id"] for d in duplicates} < {g["webhook_id"] for g in genuine}
    assert all(d["fault_id"] == fault["id"] for d in duplicates)
    answers = {g["webhook_id"]: g["answer_summary"] for g in genuine}
    for duplicate in duplicates:  # answered as the first time, nothing applied again
        assert duplicate["last_status_code"] == 200
        assert duplicate["answer_summary"] == answers[duplicate["webhook_id"]]
        assert duplicate["verdict_detail"] == "answered as the first time"
    assert_all_as_expected(genuine + duplicates)
    assert len(sandbox.receiver.outcomes) == 30
    assert len(await injections(sandbox, fault_id=fault["id"])) == 2
    faults = await all_pages(sandbox.client, "/sandbox/faults")
    assert faults[0]["applied"] == 2 and faults[0]["in_force"] is False


async def test_duplicate_results_under_a_new_webhook_id_are_answered_as_duplicates(
    sandbox: Sandbox,
) -> None:
    provider_id = await sandbox.provider(results_per_webhook=5)
    await put_faults(sandbox.client, {"kind": "duplicate_results", "count": 1})
    await sandbox.send_batch(provider_id, 10)

    deliveries = by_kind(await sandbox.settled(deliveries=3))

    (duplicate,) = deliveries["duplicate_results"]
    assert duplicate["webhook_id"] not in {g["webhook_id"] for g in deliveries["results"]}
    assert duplicate["answer_summary"] == {
        "received": 5,
        "applied": 0,
        "duplicates": 5,
        "exceptions": 0,
    }
    assert_all_as_expected(deliveries["results"] + deliveries["duplicate_results"])


async def test_reordered_webhooks_arrive_last_first_with_their_results_shuffled(
    sandbox: Sandbox,
) -> None:
    provider_id = await sandbox.provider(results_per_webhook=4)
    (fault,) = await put_faults(sandbox.client, {"kind": "reorder", "count": 3, "seed": 5})
    await sandbox.send_batch(provider_id, 12)

    deliveries = await sandbox.settled(deliveries=3)

    planned = [d["webhook_id"] for d in deliveries]  # the log is in planning order
    arrived = [call.webhook_id for call in sandbox.receiver.ok_calls()]
    assert arrived == list(reversed(planned))
    assert all("reorder" in d["faults"] for d in deliveries)
    for position, delivery in enumerate(deliveries):
        detail = (await sandbox.client.get(f"/sandbox/deliveries/{delivery['id']}")).json()
        due_order = [f"P{4 * position + i:06d}" for i in range(4)]
        shuffled = list(due_order)
        seeded(5, fault["id"], delivery["webhook_id"]).shuffle(shuffled)
        assert [r["payment_number"] for r in detail["body"]["results"]] == shuffled
    assert_all_as_expected(deliveries)


async def test_a_replay_resends_the_very_request_and_is_not_applied(sandbox: Sandbox) -> None:
    provider_id = await sandbox.provider(results_per_webhook=5)
    await put_faults(sandbox.client, {"kind": "replay", "count": 1})
    await sandbox.send_batch(provider_id, 5)

    deliveries = by_kind(await sandbox.settled(deliveries=2))

    (genuine,), (replay,) = deliveries["results"], deliveries["replay"]
    original = (await sandbox.client.get(f"/sandbox/deliveries/{genuine['id']}")).json()
    replayed = (await sandbox.client.get(f"/sandbox/deliveries/{replay['id']}")).json()
    assert replayed["attempt_log"][0]["headers"] == original["attempt_log"][-1]["headers"]
    assert replayed["body"] == original["body"]
    assert replay["last_status_code"] == 200
    assert replay["answer_summary"] == genuine["answer_summary"]
    assert_all_as_expected([genuine, replay])


async def test_a_seen_webhook_id_may_also_be_refused(sandbox: Sandbox) -> None:
    sandbox.receiver.seen_answer = "409"
    provider_id = await sandbox.provider(results_per_webhook=5)
    await put_faults(
        sandbox.client, {"kind": "replay", "count": 1}, {"kind": "duplicate_webhook", "count": 1}
    )
    await sandbox.send_batch(provider_id, 5)

    deliveries = by_kind(await sandbox.settled(deliveries=3))

    extras = deliveries["replay"] + deliveries["duplicate_webhook"]
    assert [d["last_status_code"] for d in extras] == [409, 409]
    assert_all_as_expected(deliveries["results"] + extras)


async def test_forged_signatures_are_refused_before_the_genuine_webhook_with_the_same_id(
    sandbox: Sandbox,
) -> None:
    provider_id = await sandbox.provider(results_per_webhook=5)
    variants = ["wrong_secret", "tampered_body", "missing", "malformed"]
    await put_faults(
        sandbox.client, *({"kind": "bad_signature", "variant": v, "count": 1} for v in variants)
    )
    await sandbox.send_batch(provider_id, 5)

    deliveries = by_kind(await sandbox.settled(deliveries=5))

    (genuine,), forged = deliveries["results"], deliveries["bad_signature"]
    assert len(forged) == 4
    assert {f["webhook_id"] for f in forged} == {genuine["webhook_id"]}
    assert all(f["last_status_code"] == 401 for f in forged)
    calls = [call.status_code for call in sandbox.receiver.calls]
    assert calls == [401, 401, 401, 401, 200]  # the forgeries first, then the real one
    assert genuine["answer_summary"]["applied"] == 5
    assert_all_as_expected([genuine, *forged])


async def test_stale_and_future_timestamps_are_refused(sandbox: Sandbox) -> None:
    provider_id = await sandbox.provider(results_per_webhook=5)
    await put_faults(
        sandbox.client,
        {"kind": "stale_timestamp", "age_s": 600, "count": 1},
        {"kind": "stale_timestamp", "age_s": -600, "count": 1},
    )
    await sandbox.send_batch(provider_id, 5)

    deliveries = by_kind(await sandbox.settled(deliveries=3))

    stale = deliveries["stale_timestamp"]
    sent = [
        (await sandbox.client.get(f"/sandbox/deliveries/{d['id']}")).json()["attempt_log"][0]
        for d in stale
    ]
    now = datetime.now(UTC).timestamp()
    ages = sorted(round(now - int(a["headers"]["webhook-timestamp"]), -2) for a in sent)
    assert ages == [-600, 600]
    assert all(d["last_status_code"] == 401 for d in stale)
    assert_all_as_expected(deliveries["results"] + stale)


async def test_late_results_come_after_the_payment_window_and_are_flagged(
    sandbox: Sandbox,
) -> None:
    provider_id = await sandbox.provider(results_per_webhook=10)
    await put_faults(sandbox.client, {"kind": "late_result", "after_s": 1, "count": 2})
    pay_by = datetime.now(UTC) + timedelta(seconds=1)
    body = await sandbox.send_batch(provider_id, 5, pay_by=pay_by)

    deliveries = await sandbox.settled(deliveries=2)

    late = await injections(sandbox, kind="late_result")
    assert [i["payment_number"] for i in late] == ["P000000", "P000001"]
    assert all(i["batch_id"] == body["batch_id"] for i in late)
    on_time, after = deliveries  # the on-time results were due at once, the late ones later
    assert on_time["answer_summary"]["applied"] == 3
    assert after["faults"] == ["late_result"]
    assert after["answer_summary"] == {
        "received": 2,
        "applied": 0,
        "duplicates": 0,
        "exceptions": 2,
    }
    for number in ("P000000", "P000001"):
        assert number not in sandbox.receiver.outcomes
    assert_all_as_expected(deliveries)


async def test_a_conflicting_second_settlement_comes_under_another_reference(
    sandbox: Sandbox,
) -> None:
    provider_id = await sandbox.provider(results_per_webhook=10, failure_rate=0)
    await put_faults(sandbox.client, {"kind": "conflicting_settlement", "count": 2})
    await sandbox.send_batch(provider_id, 6)

    deliveries = by_kind(await sandbox.settled(deliveries=2))

    (genuine,), (conflict,) = deliveries["results"], deliveries["conflicting_settlement"]
    detail = (await sandbox.client.get(f"/sandbox/deliveries/{conflict['id']}")).json()
    for result in detail["body"]["results"]:
        first = sandbox.receiver.outcomes[result["payment_number"]]
        assert result["provider_reference"] == first.provider_reference + "-C"
        assert result["status"] == "settled"
    assert conflict["answer_summary"]["exceptions"] == 2
    assert_all_as_expected([genuine, conflict])


async def test_an_amount_mismatch_is_reported_and_flagged(sandbox: Sandbox) -> None:
    provider_id = await sandbox.provider(results_per_webhook=10, failure_rate=0)
    await put_faults(sandbox.client, {"kind": "amount_mismatch", "delta_minor": -100, "count": 1})
    await sandbox.send_batch(provider_id, 4, amount_minor=5000)

    (genuine,) = await sandbox.settled(deliveries=1)

    (injection,) = await injections(sandbox, kind="amount_mismatch")
    assert injection["detail"] == {"reported": 4900}
    assert injection["delivery_id"] == genuine["id"]
    assert genuine["answer_summary"] == {
        "received": 4,
        "applied": 3,
        "duplicates": 0,
        "exceptions": 1,
    }
    assert injection["payment_number"] not in sandbox.receiver.outcomes
    assert_all_as_expected([genuine])


async def test_a_result_for_an_unknown_payment_rides_in_a_genuine_webhook(
    sandbox: Sandbox,
) -> None:
    provider_id = await sandbox.provider(results_per_webhook=3)
    await put_faults(sandbox.client, {"kind": "unknown_payment", "count": 1})
    await sandbox.send_batch(provider_id, 6)

    deliveries = await sandbox.settled(deliveries=2)

    (injection,) = await injections(sandbox, kind="unknown_payment")
    carrier = next(d for d in deliveries if d["id"] == injection["delivery_id"])
    assert carrier["result_count"] == 4 and "unknown_payment" in carrier["faults"]
    assert carrier["answer_summary"]["exceptions"] == 1
    assert injection["payment_number"].startswith("UNKNOWN-")
    assert_all_as_expected(deliveries)


async def test_faults_of_one_provider_leave_the_others_alone(sandbox: Sandbox) -> None:
    faulty = await sandbox.provider(results_per_webhook=5)
    healthy = await sandbox.provider(results_per_webhook=5)
    await put_faults(sandbox.client, {"kind": "duplicate_webhook", "for_s": 60}, provider_id=faulty)
    await sandbox.send_batch(faulty, 10, prefix="F")
    await sandbox.send_batch(healthy, 10, prefix="H")

    deliveries = await sandbox.settled(deliveries=6)

    kinds = Counter((d["provider_id"], d["kind"]) for d in deliveries)
    assert kinds == {
        (str(faulty), "results"): 2,
        (str(faulty), "duplicate_webhook"): 2,
        (str(healthy), "results"): 2,
    }
    assert_all_as_expected(deliveries)


async def test_the_verdict_catches_a_receiver_that_takes_forged_webhooks(
    sandbox: Sandbox,
) -> None:
    sandbox.receiver.verify = False
    provider_id = await sandbox.provider(results_per_webhook=5)
    await put_faults(sandbox.client, {"kind": "bad_signature", "count": 1})
    await sandbox.send_batch(provider_id, 5)

    deliveries = by_kind(await sandbox.settled(deliveries=2))

    (forged,) = deliveries["bad_signature"]
    assert forged["verdict"] == "unexpected"
    assert forged["verdict_detail"] == "expected a 4xx refusal, got 200"
    flagged = await all_pages(sandbox.client, "/sandbox/deliveries", verdict="unexpected")
    assert forged["id"] in {d["id"] for d in flagged}
