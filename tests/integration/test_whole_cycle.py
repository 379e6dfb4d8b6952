"""The whole cycle over the real stack (issue 10, item 12): every service's API and worker as
its own process, real PostgreSQL and Kafka, the PSP sandbox as the provider. Households are
enrolled, a provider registered, a programme defined; payroll's scheduler generates the payroll,
another user approves it, disbursement dispatches it to the sandbox, and the sandbox's webhooks
arrive delivered twice, re-sent under new ids and replayed byte for byte. No payment is settled
twice and the reconciliation equality holds in count and amount."""

from tests.stack.cycle import Cycle, check_invariants, deliveries, put_faults
from tests.stack.harness import StackInfrastructure, running_stack


async def test_the_whole_cycle_settles_each_payment_once_despite_repeated_webhooks(
    stack_infrastructure: StackInfrastructure,
) -> None:
    async with running_stack(stack_infrastructure) as stack:
        cycle = Cycle(stack, households=200)
        await cycle.prepare()
        await put_faults(
            cycle,
            {"kind": "duplicate_webhook", "count": 4},
            {"kind": "duplicate_results", "count": 4},
            {"kind": "replay", "count": 4, "delay_s": 0.5},
        )
        await cycle.activate()
        await cycle.generated()
        await cycle.approve()
        await cycle.reconciled()

        summary = await check_invariants(cycle)
        log = await deliveries(cycle)

    assert summary["settled"]["count"] > 0 and summary["failed"]["count"] > 0
    for fault in ("duplicate_webhook", "duplicate_results", "replay"):
        assert log[fault, "as_expected"] == 4, f"each {fault} delivered and answered as expected"
    assert not [key for key in log if key[1] != "as_expected"], log
