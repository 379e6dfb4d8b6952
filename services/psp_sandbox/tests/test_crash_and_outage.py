"""The sandbox as processes: its worker killed with SIGKILL mid-delivery and restarted loses
and doubles nothing; its server closes its port for a refuse outage and opens it again."""

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.clients import eventually, free_port
from amana_common.testing.service import bearer
from psp_sandbox.main import PortControlledServer, create_psp_sandbox_app
from psp_sandbox.models import Delivery, Payment

from .harness import Sandbox
from .receiver import Receiver, receiving
from .support import SECRET, fast_settings

PAYMENTS = 600
PER_WEBHOOK = 10


@pytest.fixture
async def sandbox(
    live_client: httpx.AsyncClient, committed_database: Database
) -> AsyncIterator[Sandbox]:
    """A receiver that takes its time, so a kill lands while webhooks are in flight, and
    refuses a webhook-id it has seen with 409: a redelivery after the kill must end there."""
    receiver = Receiver(SECRET, delay_s=0.03, seen_answer="409")
    async with receiving(receiver) as url:
        yield Sandbox(live_client, committed_database, receiver, url)


@contextmanager
def worker_process(database_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m psp_sandbox worker` on the committing database, as a process of its own."""
    environment = os.environ | {
        "PSP_SANDBOX_DATABASE_URL": database_url,
        "PSP_SANDBOX_ENVIRONMENT": "test",
        "PSP_SANDBOX_POLL_INTERVAL_S": "0.05",
        "PSP_SANDBOX_PLANNER_BATCH_SIZE": "100",
        "PSP_SANDBOX_DELIVERY_CONCURRENCY": "4",
        "PSP_SANDBOX_DELIVERY_TIMEOUT_S": "2",
        "PSP_SANDBOX_DELIVERY_LEASE_S": "3",
        "PSP_SANDBOX_RETRY_BASE_S": "0.05",
    }
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "psp_sandbox", "worker"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


async def kill_after(process: subprocess.Popen[bytes], receiver: Receiver, calls: int) -> None:
    await eventually(lambda: len(receiver.calls) >= calls, timeout_s=60, interval_s=0.01)
    process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(process.wait, 20)


async def test_a_worker_killed_mid_delivery_and_restarted_loses_and_doubles_nothing(
    sandbox: Sandbox, committing_url: str, tmp_path: Path
) -> None:
    provider_id = await sandbox.provider(results_per_webhook=PER_WEBHOOK, failure_rate=0.3)
    await sandbox.send_batch(provider_id, PAYMENTS)
    log = tmp_path / "worker.log"

    for kill_at in (10, 30):  # twice killed mid-way, each time restarted
        with worker_process(committing_url, log) as process:
            await kill_after(process, sandbox.receiver, kill_at)
        assert process.returncode == -signal.SIGKILL
        assert len(sandbox.receiver.ok_calls()) < PAYMENTS // PER_WEBHOOK
    with worker_process(committing_url, log):
        deliveries = await sandbox.settled(deliveries=PAYMENTS // PER_WEBHOOK, timeout_s=120)

    receiver = sandbox.receiver
    assert len(receiver.outcomes) == PAYMENTS  # nothing lost
    assert all(len(ids) == 1 for ids in receiver.carried_by.values())  # one webhook per result
    assert len(deliveries) == PAYMENTS // PER_WEBHOOK
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert [d["verdict_detail"] for d in deliveries if d["verdict"] != "as_expected"] == []
    redelivered = [call for call in receiver.calls if call.status_code == 409]
    assert len(redelivered) <= 2 * 4  # at most what was in flight at each kill
    async with sandbox.database.sessionmaker() as session:
        unplanned = await session.scalar(
            select(func.count()).select_from(Payment).where(Payment.delivery_id.is_(None))
        )
        genuine = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.kind == "results")
        )
    assert unplanned == 0 and genuine == PAYMENTS // PER_WEBHOOK


async def test_a_refuse_outage_closes_the_port_then_opens_it_again(
    committing_url: str, committed_database: Database
) -> None:
    settings = fast_settings(committing_url, port=free_port())
    server = PortControlledServer(create_psp_sandbox_app(settings), settings)
    stop = asyncio.Event()
    serving = asyncio.create_task(server.run(stop))
    base = f"http://127.0.0.1:{settings.port}"

    async def answers() -> bool:
        try:
            async with httpx.AsyncClient(base_url=base, timeout=1) as http:
                return (await http.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    async def refuses() -> bool:
        try:
            async with httpx.AsyncClient(base_url=base, timeout=1) as http:
                await http.get("/healthz")
        except httpx.ConnectError:
            return True
        except httpx.TransportError:  # accepted while the port was closing, then dropped
            return False
        return False

    try:
        await eventually(answers, timeout_s=20, interval_s=0.05)
        async with httpx.AsyncClient(base_url=base, headers=bearer(settings, Role.admin)) as http:
            response = await http.put(
                "/sandbox/faults",
                json={"faults": [{"kind": "outage", "mode": "refuse", "for_s": 2}]},
            )
        assert response.status_code == 200, response.text  # answered before the port closed
        await eventually(refuses, timeout_s=5, interval_s=0.05)
        await eventually(answers, timeout_s=10, interval_s=0.1)
    finally:
        stop.set()
        await asyncio.wait_for(serving, timeout=20)
