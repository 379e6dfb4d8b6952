"""Analytics at full size: ingest 1,000,000 payment events from Kafka (bar: <= 120 s), then
every report over those 1,000,000 payments (bar: <= 1 s each).

1. A broker of the benchmark's own (its own port and storage, removed at the end) receives
   1,000,000 contract-valid payment events (settled, failed, expired) of 4 payroll cycles,
   over 1,000 locations, 3 providers, 2 mechanisms; producing them is not timed.
2. The analytics worker's consumer (batch mode) reads them into a fresh database; timed from
   its start until its group has committed the end of every partition.
3. The payrolls of the cycles (PayrollGenerated, PayrollApproved chunks of 1,000 lines) and
   a household per 4 payments (250,000 at full size) are applied through the same handlers
   (not timed), then each report is asked 3 times through the HTTP API in-process, unfiltered
   and filtered; the slowest of the 3 is compared with the bar.

    make bench-analytics      # or: uv run python bench/analytics_at_scale.py [--payments 1000000]
    uv run python bench/analytics_at_scale.py --payments 20000   # a check in about a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

import uvloop
from _common import at_most, freeze_heap, report
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.analytics.tests import factories  # noqa: E402
from services.analytics.tests.ingest import apply_in_order  # noqa: E402
from services.analytics.tests.kafka_setup import caught_up, topic_ends  # noqa: E402

from amana_common.auth import Role  # noqa: E402
from amana_common.db import create_database  # noqa: E402
from amana_common.kafka import KafkaConnection, reliable_producer  # noqa: E402
from amana_common.testing.clients import free_port, service_client  # noqa: E402
from amana_common.testing.databases import migrated_test_database  # noqa: E402
from amana_common.testing.infrastructure import LocalBroker, provide_infrastructure  # noqa: E402
from amana_common.testing.service import bearer  # noqa: E402
from amana_common.topics import ensure_topics  # noqa: E402
from amana_contracts.catalog import EVENTS  # noqa: E402
from amana_contracts.disbursement import PaymentFailedV1, PaymentSettledV1  # noqa: E402
from amana_contracts.envelope import CloudEvent, topic_for  # noqa: E402
from analytics import consumers  # noqa: E402
from analytics.main import create_analytics_app  # noqa: E402
from analytics.settings import AnalyticsSettings  # noqa: E402
from analytics.worker import ingest_consumer  # noqa: E402

INGEST_BAR_S = 120.0
REPORT_BAR_S = 1.0
NS = UUID("6f1d0c52-8c55-4d7c-9d4b-0b8f2a1a0c11")
TOPIC = "disbursement.events"
PROVIDERS = [("MPESA", "mobile_money"), ("AIRTEL", "mobile_money"), ("BANKX", "bank_transfer")]
SEXES, BANDS = ("female", "male"), ("18-34", "35-59", "60+")
FAILURES = [("failed", "AC01"), ("failed", "AC04"), ("failed", "AM04"), ("expired", "EXPIRED")]
CYCLES = [factories.Cycle("BENCH", month) for month in (8, 9, 10, 11)]
LOCATIONS = [f"KE-{county:03d}-{ward:04d}" for county in range(1, 48) for ward in range(1, 22)][
    :1000
]


def households_for(payments: int) -> int:
    return max(1, payments // 4)


def _id(*parts: object) -> UUID:
    return uuid5(NS, "/".join(str(p) for p in parts))


def payment_events(count: int, seed: int = 7) -> Iterator[tuple[bytes, bytes]]:
    """(key, CloudEvent JSON) of `count` payment outcomes, written as text for speed; the
    first of each kind is checked against its contract below."""
    rng = random.Random(seed)
    per_cycle = count // len(CYCLES)
    for index in range(count):
        cycle = CYCLES[min(index // per_cycle, len(CYCLES) - 1)]
        provider, mechanism = PROVIDERS[index % len(PROVIDERS)]
        payment_id = _id("payment", index)
        approved = datetime.combine(cycle.window_start, datetime.min.time(), UTC)
        at = approved + timedelta(seconds=rng.randint(3600, 14 * 86400))
        data: dict[str, Any] = {
            "payment_id": str(payment_id),
            "payment_number": f"P{index:012d}",
            "payroll_id": str(cycle.payroll_id),
            "payroll_line_id": str(_id("line", index)),
            "programme_id": str(cycle.programme_id),
            "cycle_id": str(cycle.cycle_id),
            "household_id": str(_id("household", index % households_for(count))),
            "provider_id": str(factories.uid(f"provider/{provider}")),
            "mechanism": mechanism,
            "location_code": LOCATIONS[index % len(LOCATIONS)],
            "recipient_sex": SEXES[index % 2],
            "recipient_age_band": BANDS[index % 3],
            "currency": "KES",
            "amount_minor": 300_000,
        }
        roll = rng.random()
        if roll < 0.9:
            name = "PaymentSettled"
            data |= {
                "provider_reference": f"R{index}",
                "settled_at": at.isoformat(),
                "fee_minor": 150,
            }
        else:
            outcome, reason = FAILURES[index % len(FAILURES)]
            name = "PaymentFailed"
            data |= {
                "outcome": outcome,
                "reason_code": reason,
                "retryable": outcome == "failed",
                "failed_at": at.isoformat(),
            }
        envelope = {
            "specversion": "1.0",
            "id": str(uuid4()),
            "source": "amana/disbursement",
            "type": f"amana.disbursement.{name}.v1",
            "time": at.isoformat(),
            "subject": str(payment_id),
            "datacontenttype": "application/json",
            "data": data,
        }
        yield str(payment_id).encode(), json.dumps(envelope).encode()


def check_contracts() -> None:
    seen: set[str] = set()
    for _, value in payment_events(200):
        event = CloudEvent.model_validate_json(value)
        model = PaymentSettledV1 if event.name == "PaymentSettled" else PaymentFailedV1
        model.model_validate(event.data)
        seen.add(event.name)
    assert seen == {"PaymentSettled", "PaymentFailed"}


async def produce(bootstrap: str, count: int) -> float:
    started = time.monotonic()
    producer = reliable_producer(KafkaConnection(bootstrap), "bench-analytics")
    await producer.start()
    try:
        pending = []
        for key, value in payment_events(count):
            pending.append(await producer.send(TOPIC, value=value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def ends_of(bootstrap: str) -> dict[Any, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await topic_ends(admin, bootstrap, [TOPIC])
    finally:
        await admin.close()


async def ingest(
    settings: AnalyticsSettings, database: Any, ends: dict[Any, int]
) -> tuple[float, float]:
    """Wall seconds until the group committed every end, and this process's CPU seconds."""
    component = ingest_consumer(settings, database)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    stop = asyncio.Event()
    started, cpu = time.monotonic(), time.process_time()
    task = asyncio.create_task(component.run(stop))
    try:
        while True:
            await asyncio.sleep(0.5)
            if task.done():
                task.result()
            if await caught_up(admin, settings.consumer_name, ends):
                return time.monotonic() - started, time.process_time() - cpu
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await admin.close()


async def add_payrolls_and_households(
    settings: AnalyticsSettings, database: Any, payments: int
) -> None:
    routes = consumers.batch_handlers(settings.pseudonym_key.encode())
    per_cycle = payments // len(CYCLES)
    for cycle in CYCLES:
        lines = [
            factories.Line(
                f"{cycle.month}-{i}",
                LOCATIONS[i % len(LOCATIONS)],
                PROVIDERS[i % 3][0],
                PROVIDERS[i % 3][1],
                SEXES[i % 2],
                BANDS[i % 3],
                300_000,
            )
            for i in range(per_cycle)
        ]
        eligible = {loc: 0 for loc in LOCATIONS}
        for line in lines:
            eligible[line.location] += 1
        events = [
            factories.payroll_generated(
                cycle,
                lines,
                eligible_by_location=eligible,
                exclusions={"under_review": 100},
                budget=per_cycle * 300_000,
            )
        ]
        approved_at = datetime.combine(cycle.window_start, datetime.min.time(), UTC)
        events += factories.payroll_approved(cycle, lines, at=approved_at)
        async with database.sessionmaker() as session, session.begin():
            await apply_in_order(session, routes, events)
    people = [
        factories.Person("female", date(1980, 1, 1), head=True),
        factories.Person("male", date(2012, 5, 5)),
    ]
    households = households_for(payments)
    for start in range(0, households, 5_000):
        batch = [
            factories.household(
                f"bench-{i}",
                LOCATIONS[i % len(LOCATIONS)],
                people,
                enrolled=datetime(2026, 1 + i % 8, 1, tzinfo=UTC),
                number=i,
            )
            for i in range(start, min(start + 5_000, households))
        ]
        async with database.sessionmaker() as session, session.begin():
            await apply_in_order(session, routes, batch)


QUERIES: list[tuple[str, dict[str, str]]] = [
    ("summary", {}),
    ("outcomes", {}),
    ("outcomes", {"group_by": "location", "level": "3"}),
    ("outcomes", {"group_by": "provider,mechanism,sex,age_band"}),
    ("non_payment_reasons", {"group_by": "provider"}),
    ("timeliness", {}),
    ("timeliness", {"group_by": "provider", "location": "KE-010"}),
    ("coverage", {"level": "3"}),
    ("coverage", {}),
    ("payroll", {}),
    ("enrolment", {}),
    ("households", {"level": "3"}),
    ("members", {}),
    ("duplicates", {}),
]


async def time_reports(settings: AnalyticsSettings, database: Any) -> list[tuple[str, float, int]]:
    results = []
    app = create_analytics_app(settings)
    async with service_client(app, database) as http:
        http.headers.update(bearer(settings, Role.analyst))
        for name, params in QUERIES:
            timings = []
            for _ in range(3):
                started = time.monotonic()
                response = await http.get(f"/reports/{name}", params=params)
                timings.append(time.monotonic() - started)
                assert response.status_code == 200, response.text
            rows = len(response.json()["rows"])
            label = name + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
            results.append((label, max(timings), rows))
    return results


async def main(payments: int, ingest_only: bool = False) -> int:
    check_contracts()
    infrastructure = provide_infrastructure()
    with tempfile.TemporaryDirectory(prefix="amana-bench-broker-") as state:
        broker = LocalBroker(Path(state), free_port())
        broker.start()
        try:
            # Every topic the worker reads: it waits for the ones that do not exist yet.
            topics = [topic_for(service) for service in EVENTS]
            await ensure_topics(
                KafkaConnection(broker.bootstrap), topics + [f"{topic}.dlq" for topic in topics]
            )
            produced_s = await produce(broker.bootstrap, payments)
            print(
                f"produced {payments:,} payment events in {produced_s:.1f}s (not timed)", flush=True
            )
            url = await migrated_test_database(
                infrastructure.postgres_url, "analytics", REPO / "services" / "analytics", "bench"
            )
            settings = AnalyticsSettings(
                database_url=url,
                kafka_bootstrap=broker.bootstrap,
                environment="test",
                consumer_name="analytics-bench",
            )
            database = create_database(url, pool_size=5)
            try:
                ends = await ends_of(broker.bootstrap)
                freeze_heap()  # as the worker does at start (amana_common.cli)
                ingest_s, cpu_s = await ingest(settings, database, ends)
                ok = report(
                    f"analytics ingest of {payments:,} payment events from Kafka",
                    ingest_s,
                    "s",
                    at_most(INGEST_BAR_S),
                    detail=f"{payments / ingest_s:,.0f} events/s; the consumer used "
                    f"{cpu_s:.1f} s of CPU ({cpu_s / payments * 1e6:.0f} us per event)",
                )
                if ingest_only:
                    return 0 if ok else 1
                await add_payrolls_and_households(settings, database, payments)
                timings = await time_reports(settings, database)
                for label, seconds, rows in timings:
                    print(f"  report {label:<58} {seconds * 1000:7.0f} ms  ({rows} rows)")
                slowest, label = max((seconds, label) for label, seconds, _ in timings)
                reports_ok = report(
                    f"analytics slowest report over {payments:,} payments",
                    slowest * 1000,
                    "ms",
                    at_most(REPORT_BAR_S * 1000),
                    detail=f"{label}, slowest of 3 runs; {len(timings)} report queries",
                )
            finally:
                await database.dispose()
        finally:
            broker.stop()
    return 0 if ok and reports_ok else 1


if __name__ == "__main__":
    # Stopped from outside (timeout, Ctrl-C): unwind, so that the broker of its own stops.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--ingest-only", action="store_true", help="skip the reports")
    arguments = parser.parse_args()
    sys.exit(uvloop.run(main(arguments.payments, arguments.ingest_only)))
