"""Disbursement at full size, against the local (or AMANA_DATABASE_URL) PostgreSQL:

1. a 1,000,000-line payroll from PayrollApproved (1,000 chunks of 1,000 lines, each parsed
   and applied in its own transaction as the consumer does, in this process with its heap
   frozen as the worker's is) to batches ready for dispatch (bar: <= 120 s);
2. 100,000 payment results through batch webhooks of 5,000, signed, over HTTP to the service
   running as its own process (`python -m disbursement api`), sent one after another
   (bar: >= 5,000 results/s applied);
3. single-result webhooks at a constant 200 requests/s for 20 s, open loop, sent by vegeta
   (a Go load generator, built into .local/bin on first use; about a tenth of the CPU of a
   Python client, which took a third of the two cores and whose own pauses showed as latency)
   to that process (bar: p95 <= 100 ms, no error). Requests are signed before the clock
   starts; the service verifies every signature.

Each phase also prints the load average while it ran and the CPU seconds this process (the
consumer, then the load generator) and the API process spent: on a shared machine the wall
clock alone says little.

    make bench-disbursement      # or: uv run python bench/disbursement_throughput.py
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from _common import CpuMeter, at_least, at_most, freeze_heap, go_tool, postgres_server_url, report
from sqlalchemy import func, select, text
from uuid6 import uuid7

from amana_common.db import Database, create_database
from amana_common.testing.clients import free_port
from amana_common.testing.databases import migrated_test_database
from amana_contracts.payroll import PayrollApprovedV1
from disbursement import channels, service
from disbursement.models import Batch, Payment
from disbursement.settings import DEFAULT_SECRETS_KEY, DisbursementSettings

REPO = Path(__file__).resolve().parents[1]
PROVIDERS = [uuid.UUID(int=0x0193_0000_0000_7000_8000_0000_0000_BE00 + i) for i in range(4)]
VEGETA = "github.com/tsenart/vegeta/v12@v12.13.0"
KEY = DisbursementSettings(environment="test").secrets_key_bytes()


class Phase:
    """Load average and CPU seconds (this process, the API's, the local servers') over one
    phase."""

    def __init__(self, api_pid: int | None = None) -> None:
        self.load = os.getloadavg()[0]
        self.meter = CpuMeter(**({"the API process": api_pid} if api_pid else {}))

    def summary(self) -> str:
        load = f"load average {self.load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        spent = [f"{name} {seconds:.1f} s" for name, seconds in self.meter.spent().items()]
        return f"      {load}; CPU: {', '.join(spent)}"


def chunk_json(payroll: dict[str, Any], index: int, size: int) -> bytes:
    lines = [
        {
            "line_id": str(uuid7()),  # as the payroll service makes them: time-ordered
            "household_id": str(uuid.uuid4()),
            "household_number": f"H{index * size + i:010d}",
            "location_code": "KE-047-0101",
            "recipient": {
                "member_id": str(uuid.uuid4()),
                "given_name": "Amina",
                "family_name": "Otieno",
                "sex": "female",
                "age_band": "35-59",
                "identifier": {"scheme": "national_id", "value": f"{10_000_000 + i}"},
                "phone": "+254700000001",
            },
            "provider_id": str(PROVIDERS[i % len(PROVIDERS)]),
            "mechanism": "mobile_money",
            "account": {"kind": "msisdn", "value": "+254700000001"},
            "amount_minor": 250_000,
        }
        for i in range(size)
    ]
    return json.dumps({**payroll, "chunk_index": index, "lines": lines}).encode()


async def release_bench(database: Database, lines: int, chunk_size: int) -> tuple[float, int, str]:
    chunk_count = lines // chunk_size
    payroll = {
        "payroll_id": str(uuid.uuid4()),
        "programme_id": str(uuid.uuid4()),
        "programme_code": "BENCH",
        "cycle_id": str(uuid.uuid4()),
        "period_start": "2026-12-01",
        "period_end": "2026-12-31",
        "currency": "KES",
        "payment_window_start": "2026-12-01",
        "payment_window_end": "2099-12-31",
        "approved_at": "2026-11-30T10:00:00Z",
        "approved_by": "bench",
        "line_count": lines,
        "total_amount_minor": lines * 250_000,
        "chunk_count": chunk_count,
    }
    print(f"generating {chunk_count} chunks of {chunk_size} lines ...", flush=True)
    raw = [chunk_json(payroll, index, chunk_size) for index in range(chunk_count)]
    print("applying them ...", flush=True)
    freeze_heap()  # as `python -m disbursement worker` does before it consumes
    phase = Phase()
    started = time.perf_counter()
    outcome = ""
    for body in raw:
        chunk = PayrollApprovedV1.model_validate_json(body)
        async with database.sessionmaker() as session, session.begin():
            outcome = await service.receive_payroll_chunk(session, chunk, 1000, datetime.now(UTC))
    elapsed = time.perf_counter() - started
    summary = phase.summary()
    assert outcome == "released", outcome
    async with database.sessionmaker() as session:
        batches = await session.scalar(select(func.count()).select_from(Batch))
    return elapsed, int(batches or 0), summary


async def secrets(database: Database) -> dict[uuid.UUID, str]:
    found = {}
    async with database.sessionmaker() as session, session.begin():
        for provider in PROVIDERS:
            await session.execute(
                text(
                    "INSERT INTO providers VALUES (:id, 'BENCH', 'active', '{KES}', 'file', NULL,"
                    " NULL, 'KES', 0, 0, '{}', 1, now()) ON CONFLICT DO NOTHING"
                ),
                {"id": provider},
            )
            _, secret = await service.rotate_webhook_secret(
                session, provider, KEY, timedelta(0), "bench", datetime.now(UTC)
            )
            found[provider] = secret
    return found


async def open_numbers(database: Database, limit: int, offset: int) -> list[tuple[str, uuid.UUID]]:
    async with database.sessionmaker() as session:
        rows = await session.execute(
            select(Payment.number, Payment.provider_id)
            .order_by(Payment.number)
            .offset(offset)
            .limit(limit)
        )
        return [(number, provider) for number, provider in rows.all()]


def body_of(numbers: list[str]) -> str:
    now = datetime.now(UTC).isoformat()
    results = [
        {
            "payment_number": number,
            "status": "settled",
            "amount_minor": 250_000,
            "currency": "KES",
            "provider_reference": f"B-{number}",
            "occurred_at": now,
        }
        for number in numbers
    ]
    return json.dumps({"type": "payment.results", "results": results})


def signed(secret: str, body: str) -> dict[str, str]:
    headers = channels.sign(secret, f"msg_{uuid.uuid4().hex}", datetime.now(UTC), body)
    return {**headers, "content-type": "application/json"}


async def batch_webhooks(
    base: str, keys: dict[uuid.UUID, str], numbers: list[tuple[str, uuid.UUID]]
) -> float:
    by_provider: dict[uuid.UUID, list[str]] = {}
    for number, provider in numbers:
        by_provider.setdefault(provider, []).append(number)
    bodies = [
        (provider, body_of(part[i : i + 5000]))
        for provider, part in by_provider.items()
        for i in range(0, len(part), 5000)
    ]
    applied = 0
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        started = time.perf_counter()
        for provider, body in bodies:
            url = f"{base}/webhooks/providers/{provider}"
            async with http.post(url, data=body, headers=signed(keys[provider], body)) as answer:
                assert answer.status == 200, await answer.text()
                applied += (await answer.json())["applied"]
        elapsed = time.perf_counter() - started
    assert applied == len(numbers), applied
    return applied / elapsed


def webhook_targets(
    base: str, keys: dict[uuid.UUID, str], numbers: list[tuple[str, uuid.UUID]]
) -> list[dict[str, Any]]:
    """One vegeta target per number: a single result, signed now (the signatures stay valid
    for the 5 minutes the service allows)."""
    return [
        {
            "method": "POST",
            "url": f"{base}/webhooks/providers/{provider}",
            "body": base64.b64encode(body.encode()).decode(),
            "header": {name: [value] for name, value in signed(keys[provider], body).items()},
        }
        for number, provider in numbers
        if (body := body_of([number]))
    ]


def single_webhooks(
    targets: list[dict[str, Any]], rate: int, seconds: int
) -> tuple[float, float, float, int, float]:
    """vegeta at a constant `rate` for `seconds` over `targets`: requests/s achieved, p50 and
    p95 ms, requests not answered 200, and the CPU seconds vegeta spent."""
    with tempfile.TemporaryDirectory(prefix="amana-vegeta-") as folder:
        path = Path(folder) / "targets.json"
        path.write_text("\n".join(json.dumps(target) for target in targets))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        attack = subprocess.run(
            [
                go_tool("vegeta", VEGETA),
                "attack",
                "-format=json",
                f"-targets={path}",
                f"-rate={rate}/1s",
                f"-duration={seconds}s",
                "-timeout=30s",
            ],
            check=True,
            capture_output=True,
        )
        summary = json.loads(
            subprocess.run(
                [go_tool("vegeta", VEGETA), "report", "-type=json"],
                input=attack.stdout,
                check=True,
                capture_output=True,
            ).stdout
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    latencies = summary["latencies"]
    answered = summary["status_codes"].get("200", 0)
    spent = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return (
        summary["throughput"],
        latencies["50th"] / 1e6,
        latencies["95th"] / 1e6,
        summary["requests"] - answered,
        spent,
    )


def start_api(database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "DISBURSEMENT_DATABASE_URL": database_url,
        "DISBURSEMENT_ENVIRONMENT": "test",
        "DISBURSEMENT_LOG_LEVEL": "WARNING",
        "DISBURSEMENT_SECRETS_KEY": DEFAULT_SECRETS_KEY,
    }
    log = open(REPO / ".local" / "bench-disbursement.log", "w")  # noqa: SIM115
    child = subprocess.Popen(
        [sys.executable, "-m", "disbursement", "api", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return child
        except OSError:
            time.sleep(0.2)
    child.terminate()
    raise SystemExit("the disbursement API did not start; see .local/bench-disbursement.log")


async def run(args: argparse.Namespace) -> bool:
    url = await migrated_test_database(
        postgres_server_url(), "disbursement", REPO / "services" / "disbursement", "bench"
    )
    database = create_database(url, pool_size=5)
    ok = True
    try:
        seconds, batches, applying = await release_bench(database, args.lines, 1000)
        ok &= report(
            f"{args.lines:,} lines PayrollApproved -> batches ready",
            seconds,
            "s",
            at_most(120),
            detail=f"{batches:,} batches",
        )
        print(applying, flush=True)
        keys = await secrets(database)
        port = free_port()
        api = start_api(url, port)
        try:
            base = f"http://127.0.0.1:{port}"
            numbers = await open_numbers(database, args.results, 0)
            phase = Phase(api.pid)
            rate = await batch_webhooks(base, keys, numbers)
            ok &= report(
                f"{args.results:,} results through batch webhooks of 5,000",
                rate,
                "results/s",
                at_least(5000),
            )
            print(phase.summary(), flush=True)
            singles = await open_numbers(database, 200 * 21, args.results)
            targets = webhook_targets(base, keys, singles)
            phase = Phase(api.pid)
            achieved, p50, p95, errors, vegeta_cpu = single_webhooks(targets, 200, 20)
            ok &= report(
                "single-result webhooks p95 at 200 requests/s",
                p95,
                "ms",
                at_most(100),
                ok=errors == 0,
                detail=f"{achieved:.0f} requests/s for 20 s, p50 {p50:.1f} ms, {errors} errors",
            )
            print(f"{phase.summary()}, vegeta {vegeta_cpu:.1f} s", flush=True)
        finally:
            api.terminate()
            api.wait(timeout=20)
    finally:
        await database.dispose()
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--results", type=int, default=100_000)
    return 0 if uvloop.run(run(parser.parse_args())) else 1


if __name__ == "__main__":
    sys.exit(main())
