"""The fault suite (`make test-faults`): the whole cycle over the real stack while a worker is
killed with SIGKILL, the broker or PostgreSQL goes down, the PSP misbehaves, or two workers race.
Each scenario ends with the same checks (`check_invariants`): every approved line has exactly
one payment, no payment settled twice, the reconciliation equality in count and amount, every
event applied once by each consumer, nothing in a DLQ, every outbox drained.

Those marked `faults_ci` also run in `make test`; the others only in `make test-faults`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.stack.cycle import Cycle, check_invariants, deliveries, put_faults
from tests.stack.harness import SPLIT, StackInfrastructure, running_stack, until

pytestmark = [pytest.mark.faults, pytest.mark.integration]
in_ci = pytest.mark.faults_ci

HOUSEHOLDS = 100


async def some_sent(cycle: Cycle) -> bool:
    """Dispatch has begun: a batch is sent (batches of 5, so most are usually still to go;
    waiting for "some sent, some pending" can miss a window this short)."""
    return bool(
        await cycle.scalar(
            "disbursement",
            f"select count(*) from batches where payroll_id = '{cycle.payroll_id}' "
            "and status = 'sent'",
        )
    )


async def some_settled(cycle: Cycle) -> bool:
    """Webhooks are being applied: some payments have a result, others not yet."""
    counts = dict(
        await cycle.rows(
            "disbursement",
            f"select status in ('settled', 'failed'), count(*) from payments "
            f"where payroll_id = '{cycle.payroll_id}' group by 1",
        )
    )
    return bool(counts.get(True)) and bool(counts.get(False))


async def approved_and_released(cycle: Cycle) -> None:
    await cycle.activate()
    await cycle.generated()
    await cycle.approve()
    await cycle.released()


async def finish(cycle: Cycle) -> dict[str, Any]:
    await cycle.reconciled()
    return await check_invariants(cycle)


# --- kill -9 of each worker in the middle of its work ------------------------------------------


async def test_registry_worker_killed_while_households_are_enrolled(
    stack_infrastructure: StackInfrastructure,
) -> None:
    split = (*SPLIT, "registry")
    async with running_stack(stack_infrastructure, split=split) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.register_provider()
        await cycle.open_channels()
        enrolment = asyncio.create_task(cycle.enrol())
        await until(
            lambda: cycle.scalar("payroll", "select count(*) > 0 from households"),
            "the first households to reach payroll",
        )
        await stack.restart("registry-worker")
        await enrolment
        await cycle.define_programme()
        await cycle.projected()
        await approved_and_released(cycle)
        await finish(cycle)


async def test_payroll_worker_killed_while_generating(
    stack_infrastructure: StackInfrastructure,
) -> None:
    settings = {"payroll": {"GENERATOR_POLL_S": "3"}}  # the payroll waits a while GENERATING
    async with running_stack(stack_infrastructure, settings) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await cycle.activate()
        await until(lambda: cycle._status_is("GENERATING"), "the scheduler to create the payroll")
        await stack.restart("payroll-worker")
        await cycle.generated()
        await cycle.approve()
        await finish(cycle)


async def test_payroll_worker_killed_while_publishing_the_approved_chunks(
    stack_infrastructure: StackInfrastructure,
) -> None:
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await cycle.activate()
        await cycle.generated()
        await cycle.approve()  # the chunks are in the outbox: the relay is killed at once
        await stack.restart("payroll-worker")
        await finish(cycle)


async def test_disbursement_worker_killed_while_creating_payments(
    stack_infrastructure: StackInfrastructure,
) -> None:
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await cycle.activate()
        await cycle.generated()
        await cycle.approve()
        # the chunks are on the topic: disbursement consumes them and creates the payments now
        # (staged and released in one transaction at this size, so nothing shows mid-way)
        await until(
            lambda: cycle.scalar("payroll", "select count(*) = 0 from outbox"),
            "PayrollApproved to be published",
            interval_s=0.05,
        )
        await stack.restart("disbursement-worker")
        await finish(cycle)


async def test_disbursement_worker_killed_while_dispatching(
    stack_infrastructure: StackInfrastructure,
) -> None:
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await approved_and_released(cycle)
        await until(lambda: some_sent(cycle), "dispatch to be under way", interval_s=0.05)
        await stack.restart("disbursement-worker")
        await finish(cycle)


async def test_disbursement_api_killed_while_applying_webhooks(
    stack_infrastructure: StackInfrastructure,
) -> None:
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await approved_and_released(cycle)
        await until(lambda: some_settled(cycle), "webhooks to be applied", interval_s=0.05)
        await stack.restart("disbursement-api")
        await finish(cycle)
        assert not [k for k in await deliveries(cycle) if k[1] != "as_expected"]


async def test_sandbox_worker_killed_while_delivering_webhooks(
    stack_infrastructure: StackInfrastructure,
) -> None:
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await approved_and_released(cycle)
        await until(lambda: some_settled(cycle), "webhooks to be applied", interval_s=0.05)
        await stack.restart("psp_sandbox-worker")
        await finish(cycle)


async def test_analytics_worker_killed_while_ingesting(
    stack_infrastructure: StackInfrastructure,
) -> None:
    split = (*SPLIT, "analytics")
    async with running_stack(stack_infrastructure, split=split) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await approved_and_released(cycle)
        await until(lambda: some_settled(cycle), "webhooks to be applied", interval_s=0.05)
        await stack.restart("analytics-worker")  # settlements are being ingested
        await finish(cycle)


# --- the broker and PostgreSQL ----------------------------------------------------------------


async def test_broker_stopped_and_restarted_during_dispatch(
    stack_infrastructure: StackInfrastructure,
) -> None:
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await approved_and_released(cycle)
        await until(lambda: some_sent(cycle), "dispatch to be under way", interval_s=0.05)
        await stack.stop_broker()
        try:
            # while it is down, settlements keep arriving and their events wait in the outbox
            await until(
                lambda: cycle.scalar("disbursement", "select count(*) > 0 from outbox"),
                "settlement events to wait in the outbox",
            )
        finally:
            await stack.start_broker()
        await finish(cycle)


async def test_postgres_restarted_during_consumption(
    stack_infrastructure: StackInfrastructure,
) -> None:
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await cycle.activate()
        await cycle.generated()
        await cycle.approve()  # disbursement consumes the chunks while the server restarts
        await stack.restart_postgres()
        await finish(cycle)


@in_ci
async def test_a_worker_killed_then_the_broker_and_postgres_restarted_in_one_cycle(
    stack_infrastructure: StackInfrastructure,
) -> None:
    """What `make test` runs of this suite: the three kinds of failure in one cycle, so the
    stack starts once. PostgreSQL restarts while disbursement consumes the approved chunks,
    its worker is killed while dispatching, and the broker stops while settlements arrive."""
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await cycle.activate()
        await cycle.generated()
        await cycle.approve()
        await stack.restart_postgres()
        await cycle.released()
        await until(lambda: some_sent(cycle), "dispatch to be under way", interval_s=0.05)
        await stack.restart("disbursement-worker")
        await stack.stop_broker()
        try:
            await until(
                lambda: cycle.scalar("disbursement", "select count(*) > 0 from outbox"),
                "settlement events to wait in the outbox",
            )
        finally:
            await stack.start_broker()
        await finish(cycle)


# --- the PSP misbehaves -----------------------------------------------------------------------

SANDBOX_FAULTS: dict[str, list[dict[str, Any]]] = {
    "outage_503": [{"kind": "outage", "count": 4, "retry_after_s": 1}],
    "slow": [{"kind": "slow", "delay_s": 7, "count": 2}],
    "error_500_after_accept": [
        {"kind": "error_500", "rate": 0.5, "after_accept": True, "count": 4, "seed": 3}
    ],
    "duplicates_reorder_replay": [
        {"kind": "duplicate_webhook", "count": 3},
        {"kind": "duplicate_results", "count": 3},
        {"kind": "reorder", "count": 3},
        {"kind": "replay", "count": 3, "delay_s": 0.5},
    ],
    "forged_and_stale_signatures": [
        {"kind": "bad_signature", "variant": "wrong_secret", "count": 2},
        {"kind": "bad_signature", "variant": "tampered_body", "count": 2},
        {"kind": "bad_signature", "variant": "missing", "count": 1},
        {"kind": "bad_signature", "variant": "malformed", "count": 1},
        {"kind": "stale_timestamp", "age_s": 600, "count": 2},
        {"kind": "stale_timestamp", "age_s": -600, "count": 1},
    ],
}


@pytest.mark.parametrize("faults", SANDBOX_FAULTS.values(), ids=SANDBOX_FAULTS.keys())
async def test_the_psp_misbehaves(
    stack_infrastructure: StackInfrastructure, faults: list[dict[str, Any]]
) -> None:
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await put_faults(cycle, *faults)
        await approved_and_released(cycle)
        await finish(cycle)
        log = await deliveries(cycle)
    assert not [key for key in log if key[1] != "as_expected"], log


async def test_the_psp_is_down(stack_infrastructure: StackInfrastructure) -> None:
    """Connections refused for a while (the sandbox closes its port), then it opens again."""
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await cycle.activate()
        await cycle.generated()
        await global_faults(cycle, {"kind": "outage", "mode": "refuse", "for_s": 8})
        await cycle.approve()
        await finish(cycle)


async def test_results_after_the_payment_window_closed(
    stack_infrastructure: StackInfrastructure,
) -> None:
    """A payroll whose window has closed: its payments expire, and the results the sandbox
    sends late (`late_result`) become `result_after_expiry` exceptions, never a second
    outcome."""
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.register_provider()
        await cycle.open_channels()
        await cycle.enrol()
        await cycle.define_programme(window_closed=True)
        await cycle.projected()
        await put_faults(cycle, {"kind": "late_result", "after_s": 1, "for_s": 300})
        await cycle.activate()
        await cycle.trigger()
        await cycle.generated()
        await cycle.approve()
        summary = await finish(cycle)
        await deliveries(cycle)
        late = await cycle.scalar(
            "disbursement",
            "select count(*) from reconciliation_exceptions where kind = 'result_after_expiry'",
        )
    assert summary["expired"]["count"] == summary["payroll_totals"]["count"]
    assert late, "the late results are kept as exceptions"


async def global_faults(cycle: Cycle, *faults: dict[str, Any]) -> None:
    from amana_common.auth import Role

    async with cycle.client("psp_sandbox", "admin-1", Role.admin) as http:
        response = await http.put("/sandbox/faults", json={"faults": list(faults)})
    assert response.status_code == 200, response.text


# --- two workers of the same service on the same work ------------------------------------------


async def test_two_workers_of_each_service_race(stack_infrastructure: StackInfrastructure) -> None:
    async with running_stack(stack_infrastructure) as stack:
        for service in ("payroll", "disbursement", "psp_sandbox"):
            stack.add(service, "worker", f"{service}-worker-2")
        await stack.start(*(f"{s}-worker-2" for s in ("payroll", "disbursement", "psp_sandbox")))
        cycle = Cycle(stack, households=HOUSEHOLDS)
        await cycle.prepare()
        await approved_and_released(cycle)
        await finish(cycle)
