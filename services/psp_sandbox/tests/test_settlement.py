"""Settlement: after the configured delay, with the configured failure rate and reason mix
(seeded, reproducible), posted as signed webhooks in batches, retried when Amana does not
answer 2xx. Real committing sessions, the real worker, a real HTTP receiver."""

import time
from datetime import datetime
from itertools import pairwise

import pytest

from psp_sandbox.domain import DEFAULT_REASON_MIX, decide_outcome

from .harness import Sandbox
from .support import all_pages

ACCOUNT_REASONS = {"AC01", "AC04", "AC06", "AM04", "BE01", "MD07"}


async def test_results_come_after_the_settle_delay_signed_and_in_webhooks_of_the_set_size(
    sandbox: Sandbox,
) -> None:
    provider_id = await sandbox.provider(settle_delay_s=1.0, results_per_webhook=4)
    posted = time.monotonic()
    body = await sandbox.send_batch(provider_id, 10)
    batch = (
        await sandbox.client.get(
            f"/batches/{body['batch_id']}",
            headers={"Authorization": f"Bearer sandbox-key-{provider_id.hex}"},
        )
    ).json()
    accepted_at = datetime.fromisoformat(batch["accepted_at"])

    deliveries = await sandbox.settled(deliveries=3)

    first_arrival = time.monotonic()  # upper bound; the receiver saw them earlier
    assert first_arrival - posted >= 1.0
    assert [d["result_count"] for d in deliveries] == [4, 4, 2]
    assert all(d["status"] == "delivered" and d["verdict"] == "as_expected" for d in deliveries)
    assert len(sandbox.receiver.outcomes) == 10  # each verified by standardwebhooks
    for result in sandbox.receiver.outcomes.values():
        assert (result.occurred_at - accepted_at).total_seconds() == pytest.approx(1.0)


async def test_failure_rate_and_reasons_follow_the_seed(sandbox: Sandbox) -> None:
    provider_id = await sandbox.provider(failure_rate=0.25, seed=99, results_per_webhook=50)
    await sandbox.send_batch(provider_id, 400)

    await sandbox.settled(deliveries=8)

    outcomes = sandbox.receiver.outcomes
    predicted = {
        number: decide_outcome(99, number, "mobile_money", 0.25, DEFAULT_REASON_MIX)
        for number in outcomes
    }
    failed = [r for r in outcomes.values() if r.status == "failed"]
    assert 60 <= len(failed) <= 140
    assert {n: (r.status, r.reason_code) for n, r in outcomes.items()} == {
        n: (p.status, p.reason_code) for n, p in predicted.items()
    }
    assert {r.reason_code for r in failed} <= ACCOUNT_REASONS  # no cash no-show for mobile money
    assert len({r.provider_reference for r in outcomes.values()}) == 400


async def test_a_delivery_not_answered_2xx_is_retried_with_backoff(sandbox: Sandbox) -> None:
    sandbox.receiver.fail_first = 3
    provider_id = await sandbox.provider()
    await sandbox.send_batch(provider_id, 5)

    (delivery,) = await sandbox.settled(deliveries=1)

    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 4
    assert delivery["verdict"] == "as_expected"
    assert delivery["answer_summary"] == {
        "received": 5,
        "applied": 5,
        "duplicates": 0,
        "exceptions": 0,
    }
    detail = (await sandbox.client.get(f"/sandbox/deliveries/{delivery['id']}")).json()
    log = detail["attempt_log"]
    assert [a["status_code"] for a in log] == [503, 503, 503, 200]
    assert all(a["headers"]["webhook-id"] == delivery["webhook_id"] for a in log)
    gaps = [
        (
            datetime.fromisoformat(b["started_at"]) - datetime.fromisoformat(a["started_at"])
        ).total_seconds()
        for a, b in pairwise(log)
    ]
    assert gaps[0] >= 0.05 * 0.75 and gaps[1] >= 0.1 * 0.75  # exponential from retry_base_s


async def test_a_delivery_is_abandoned_after_the_last_attempt_and_flagged(
    sandbox: Sandbox,
) -> None:
    sandbox.receiver.fail_first = 100
    provider_id = await sandbox.provider()
    await sandbox.send_batch(provider_id, 2)

    (delivery,) = await sandbox.settled(deliveries=1)

    assert delivery["status"] == "abandoned"
    assert delivery["attempts"] == 5
    assert delivery["verdict"] == "unexpected"
    assert "gave up after 5 attempts" in delivery["verdict_detail"]
    unexpected = await all_pages(sandbox.client, "/sandbox/deliveries", verdict="unexpected")
    assert [d["id"] for d in unexpected] == [delivery["id"]]


async def test_get_batch_reports_completed_once_every_result_was_delivered(
    sandbox: Sandbox,
) -> None:
    provider_id = await sandbox.provider(results_per_webhook=3)
    body = await sandbox.send_batch(provider_id, 7)

    await sandbox.settled(deliveries=3)

    status = (
        await sandbox.client.get(
            f"/batches/{body['batch_id']}",
            headers={"Authorization": f"Bearer sandbox-key-{provider_id.hex}"},
        )
    ).json()
    assert status["status"] == "completed"
    assert all(p["reported"] for p in status["payments"])
    assert status["counts"]["pending"] == 0
