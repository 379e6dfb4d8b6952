"""Outbox -> Kafka, against the local (or AMANA_DATABASE_URL / AMANA_KAFKA_BOOTSTRAP) PostgreSQL
and Kafka, with the relay as every worker builds it (`amana_common.worker.outbox_relay`, the
default settings: batches of 500 rows or 4 MiB, polls every 50 ms, acks=all, idempotence).

1. Throughput: 100,000 events of about 1 KB are written to the outbox at once (set-based), then
   the relay publishes them all; events/s from its start until the last acknowledgement. Twice:
   with a key per event (household events), and with 8 keys (8 aggregates with many events each,
   the worst case of the relay's per-key ordering). Bar: >= 5,000 events/s each. Then, printed
   for information, 200 PayrollApproved-like chunks of about 250 KB on one key.
2. Lag: a producer process commits 1,000 events/s (one event per transaction, through
   `add_to_outbox` as services do) for 30 s while the relay runs in its own process; a consumer
   reads them back from Kafka. Lag = the event read back - its transaction committed, per event.
   Bar: p99 <= 1 s, and every event read back.

    make bench-outbox      # or: uv run python bench/outbox_relay.py [--events 100000 --seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvloop
from _common import (
    REPO,
    CpuMeter,
    at_least,
    at_most,
    kafka_bootstrap,
    load_average,
    percentile,
    postgres_server_url,
    report,
)
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from uuid6 import uuid7

from amana_common.db import Database, create_database
from amana_common.events import add_to_outbox, build_event
from amana_common.kafka import KafkaConnection, admin_client
from amana_common.outbox import OutboxRelay
from amana_common.testing.databases import migrated_test_database
from amana_common.topics import ensure_topics
from amana_common.worker import outbox_relay, stop_on_signals
from amana_contracts.base import EventData
from amana_contracts.envelope import topic_for
from registry.settings import RegistrySettings

SERVICE_DIR = REPO / "services" / "registry"
THROUGHPUT_BAR = 5_000.0
LAG_BAR_S = 1.0


class OutboxBenchEvent(EventData):
    """An event of about the size of a household's (1 KB), on a topic of the benchmark's own."""

    service = "outbox_bench"
    event_name = "Measured"

    key: str
    filler: str

    def subject(self) -> str:
        return self.key


TOPIC = topic_for(OutboxBenchEvent.service)


def payload_template(size: int) -> str:
    """A real CloudEvent of about `size` bytes whose id and subject SQL fills in per row."""
    event = build_event(OutboxBenchEvent(key="__KEY__", filler="x" * size))
    return event.model_dump_json().replace(str(event.id), "__ID__")


@dataclass(frozen=True)
class Case:
    name: str
    events: int
    key_sql: str  # the key of row `n`
    size: int
    bar: float | None


async def fill_outbox(database: Database, case: Case) -> None:
    """Writes the case's rows in one set-based INSERT ... SELECT, committed at once."""
    statement = text(
        f"""
        INSERT INTO outbox (event_id, topic, key, event_type, payload)
        SELECT e.id, :topic, e.key, :type,
               convert_to(replace(replace(:template, '__ID__', e.id::text), '__KEY__', e.key),
                          'UTF8')
        FROM (SELECT gen_random_uuid() AS id, {case.key_sql} AS key
              FROM generate_series(1, :events) AS n) AS e
        """
    )
    async with database.sessionmaker() as session, session.begin():
        await session.execute(text("TRUNCATE outbox"))
        await session.execute(
            statement,
            {
                "topic": TOPIC,
                "type": OutboxBenchEvent.cloudevent_type(),
                "template": payload_template(case.size),
                "events": case.events,
            },
        )
    autocommit = database.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as connection:
        await connection.execute(text("VACUUM ANALYZE outbox"))


async def partitions(consumer: AIOKafkaConsumer, timeout_s: float = 30) -> list[TopicPartition]:
    """Subscribes to the topic; without a group, that assigns every partition once metadata
    arrives (as `TopicReader` does)."""
    consumer.subscribe([TOPIC])
    deadline = time.monotonic() + timeout_s
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {TOPIC} has no partitions")
        await consumer.getmany(timeout_ms=100)  # drives the metadata refresh
    return sorted(consumer.assignment())


async def end_offsets(bootstrap: str) -> int:
    """The sum of the topic's end offsets: how many records it ever took."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(await partitions(consumer))).values())
    finally:
        await consumer.stop()


def relay_settings(url: str, bootstrap: str) -> RegistrySettings:
    return RegistrySettings(database_url=url, kafka_bootstrap=bootstrap, environment="test")


async def throughput(url: str, bootstrap: str, case: Case) -> bool:
    database = create_database(url, pool_size=2)
    try:
        await fill_outbox(database, case)
        before = await end_offsets(bootstrap)
        relay = outbox_relay(relay_settings(url, bootstrap), database)
        assert isinstance(relay, OutboxRelay)
        stop = asyncio.Event()
        load = load_average()
        meter = CpuMeter()
        started = time.perf_counter()
        task = asyncio.create_task(relay.run(stop))
        deadline = started + 600
        while relay.stats.published < case.events and time.perf_counter() < deadline:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        cpu = meter.spent()
        stop.set()
        await task
        published = await end_offsets(bootstrap) - before
    finally:
        await database.dispose()
    rate = relay.stats.published / elapsed
    megabytes = case.events * case.size / 1e6
    detail = (
        f"{relay.stats.published:,} of {case.events:,} published in {elapsed:.1f} s "
        f"({megabytes / elapsed:.1f} MB/s), {published:,} new records on the topic; "
        f"{cpu_cost(cpu | {'relay': cpu.pop('this process')}, case.events)}; "
        f"load {load:.1f} -> {load_average():.1f}"
    )
    complete = relay.stats.published == case.events == published
    bar = at_least(case.bar) if case.bar is not None else None
    return report(case.name, rate, "events/s", bar, ok=complete, detail=detail)


def cpu_cost(spent: dict[str, float], events: int) -> str:
    """CPU per 1,000 events of each process, and the rate they would allow together on the
    machine's cores were nothing else running: the figure that does not depend on the load."""
    per_event = sum(spent.values()) / events
    parts = ", ".join(f"{name} {seconds / events * 1e6:.0f}" for name, seconds in spent.items())
    ceiling = (os.cpu_count() or 1) / per_event if per_event else float("inf")
    return f"CPU ms per 1,000 events: {parts}; CPU-bound ceiling on idle cores {ceiling:,.0f}/s"


# --- lag: a producer process, a relay process, a consumer here ---------------------------


def bench_command(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


@contextmanager
def child(args: list[str], log: Path) -> Iterator[subprocess.Popen[str]]:
    """A process of this script; its first line of output comes through a pipe (it says when
    it is ready), the rest goes to `log`."""
    with open(log, "w") as out:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=out, text=True)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def ready_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return await asyncio.to_thread(process.stdout.readline)


class Reader:
    """Reads the topic from its end on and notes when each key was read (wall clock)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.received: dict[str, float] = {}
        self.expected: int | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        await self.consumer.start()
        assigned = await partitions(self.consumer)
        await self.consumer.seek_to_end(*assigned)
        for partition in assigned:  # resolves the end offsets now, before anything is written
            await self.consumer.position(partition)

    async def read(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=100, max_records=5000)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        self.received[record.key.decode() if record.key else ""] = now
                if self.expected is not None and len(self.received) >= self.expected:
                    self.caught_up.set()
        finally:
            await self.consumer.stop()


async def empty_outbox(url: str) -> None:
    database = create_database(url, pool_size=1)
    try:
        async with database.sessionmaker() as session, session.begin():
            await session.execute(text("TRUNCATE outbox"))
    finally:
        await database.dispose()


async def lag(url: str, bootstrap: str, rate: int, seconds: int) -> bool:
    await empty_outbox(url)
    reader, stop = Reader(bootstrap), asyncio.Event()
    await reader.start()
    reading = asyncio.create_task(reader.read(stop))
    logs = REPO / ".local"
    with tempfile.TemporaryDirectory() as scratch:
        commits = Path(scratch) / "commits.jsonl"
        relay_command = bench_command("relay", url, bootstrap)
        with child(relay_command, logs / "bench-outbox-relay.log") as relay:
            await ready_line(relay)
            idle = CpuMeter(relay=relay.pid)
            await asyncio.sleep(5)
            idle_share = idle.spent()["relay"] / 5
            produce = bench_command("produce", url, str(rate), str(seconds), str(commits))
            with child(produce, logs / "bench-outbox-producer.log") as producer:
                await ready_line(producer)
                load, meter, began = load_average(), CpuMeter(relay=relay.pid), time.monotonic()
                await asyncio.to_thread(producer.wait)
            cpu, elapsed = meter.spent(), time.monotonic() - began
            committed = dict(json.loads(line) for line in commits.read_text().splitlines())
            reader.expected = len(committed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.caught_up.wait(), timeout=30)
    stop.set()
    await reading
    return judge_lag(committed, reader.received, rate, seconds, cpu, elapsed, idle_share, load)


def judge_lag(
    committed: dict[str, float],
    received: dict[str, float],
    rate: int,
    seconds: int,
    cpu: dict[str, float],
    elapsed: float,
    idle_share: float,
    load: float,
) -> bool:
    lags = [received[key] - at for key, at in committed.items() if key in received]
    missing = len(committed) - len(lags)
    lags = lags or [float("inf")]
    p50, p95, p99 = (percentile(lags, share) * 1000 for share in (0.5, 0.95, 0.99))
    shares = ", ".join(f"{name} {spent / elapsed:.0%}" for name, spent in cpu.items())
    enough = len(committed) >= rate * seconds * 0.95
    detail = (
        f"{len(committed):,} events committed in {seconds} s, {missing} not read back; "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(lags) * 1000:.0f} ms; CPU meanwhile "
        f"(of a core): {shares.replace('this process', 'consumer')}; the relay idle (polling "
        f"every 50 ms) {idle_share:.0%}; load {load:.1f} -> {load_average():.1f}"
    )
    return report(
        f"relay lag p99 at {rate:,} events/s (commit -> read from Kafka)",
        p99,
        "ms",
        at_most(LAG_BAR_S * 1000),
        ok=missing == 0 and enough,
        detail=detail + ("" if enough else "; the producer fell behind its rate"),
    )


async def run_relay(url: str, bootstrap: str) -> None:
    """The relay process: as a worker runs it, until SIGTERM."""
    database = create_database(url, pool_size=2)
    stop = asyncio.Event()
    stop_on_signals(stop)
    print("ready", flush=True)
    try:
        await outbox_relay(relay_settings(url, bootstrap), database).run(stop)
    finally:
        await database.dispose()


async def run_producer(url: str, rate: int, seconds: int) -> list[tuple[str, float]]:
    """Commits one event per transaction, `rate` a second (open loop: on schedule whatever the
    commits' speed); answers each event's key and the wall-clock time its commit returned."""
    database = create_database(url, pool_size=10)
    committed: list[tuple[str, float]] = []
    filler = "x" * 1000

    async def one() -> None:
        key = str(uuid7())
        async with database.sessionmaker() as session, session.begin():
            await add_to_outbox(session, OutboxBenchEvent(key=key, filler=filler))
        committed.append((key, time.time()))

    tasks = []
    interval = 1 / rate
    print("ready", flush=True)
    began = time.perf_counter()
    for n in range(rate * seconds):
        await asyncio.sleep(max(0.0, began + n * interval - time.perf_counter()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    await database.dispose()
    return committed


async def prepare(bootstrap: str) -> str:
    url = await migrated_test_database(
        postgres_server_url(), "registry", SERVICE_DIR, "outbox_bench"
    )
    await ensure_topics(KafkaConnection(bootstrap), [TOPIC], partitions=6)
    return url


async def drop_topic(bootstrap: str) -> None:
    admin = admin_client(KafkaConnection(bootstrap))
    await admin.start()
    try:
        await admin.delete_topics([TOPIC])
    finally:
        await admin.close()


async def run(args: argparse.Namespace) -> bool:
    bootstrap = kafka_bootstrap()
    url = await prepare(bootstrap)
    cases = [
        Case("outbox -> Kafka, a key per event", args.events, "gen_random_uuid()::text", 1000, 5e3),
        Case("outbox -> Kafka, 8 keys", args.events, "'aggregate-' || (n % 8)", 1000, 5e3),
        Case("outbox -> Kafka, 250 KB chunks of 1 key", args.chunks, "'payroll-1'", 250_000, None),
    ]
    ok = True
    try:
        for case in cases:
            ok &= await throughput(url, bootstrap, case)
        ok &= await lag(url, bootstrap, args.rate, args.seconds)
    finally:
        await drop_topic(bootstrap)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    relay = sub.add_parser("relay")
    relay.add_argument("url")
    relay.add_argument("bootstrap")
    produce = sub.add_parser("produce")
    produce.add_argument("url")
    produce.add_argument("rate", type=int)
    produce.add_argument("seconds", type=int)
    produce.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.mode == "relay":
        uvloop.run(run_relay(args.url, args.bootstrap))
        return 0
    if args.mode == "produce":
        committed = uvloop.run(run_producer(args.url, args.rate, args.seconds))
        args.out.write_text("".join(json.dumps(item) + "\n" for item in committed))
        return 0
    return 0 if uvloop.run(run(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
