"""The whole stack as real processes, for the whole-cycle and fault tests.

Every service of the cycle (registry, provider, payroll, disbursement, the PSP sandbox and
analytics) runs
its API and its worker as separate `python -m <service> api|worker` subprocesses on free ports,
as `deploy/local/services.sh` runs them, against a PostgreSQL cluster and a Kafka broker of the
harness's own (`deploy/local/pg.sh` and `kafka.sh` on free ports in a temporary directory), so
that a test may kill -9 any process, stop and start the broker or restart PostgreSQL without
touching the servers the rest of the test session uses.

Everything is bounded: each wait has a timeout, and every process started is killed when the
stack closes (also when a test fails), the cluster and broker when the session ends.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from amana_common.catalog import load_catalog
from amana_common.testing.clients import free_port
from amana_common.testing.infrastructure import LocalBroker, free_port_pair, run_local_script

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("registry", "provider", "payroll", "disbursement", "psp_sandbox", "analytics")
SPLIT = ("payroll", "disbursement", "psp_sandbox")
"""The services whose API and worker run as separate processes unless a test says otherwise."""
TOPICS = ("registry.events", "provider.events", "payroll.events", "disbursement.events")
Role = Literal["api", "worker", "all"]
T = TypeVar("T")


async def until(
    check: Callable[[], Awaitable[T | bool | None]],
    what: str,
    timeout_s: float = 60,
    interval_s: float = 0.25,
) -> T:
    """Polls `check` until it answers something truthy; fails saying `what` after `timeout_s`.
    A check that raises (a server restarting) counts as not yet."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = await check()
        except (OSError, httpx.HTTPError, psycopg.Error) as error:
            last_error, result = error, None
        if result:
            return result  # type: ignore[return-value]
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last_error!r})")


class LocalPostgres:
    """A PostgreSQL cluster of the harness's own, which a test may restart."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self.port = port
        self.env = {"AMANA_LOCAL_DIR": str(state_dir), "AMANA_PG_PORT": str(port)}
        self.env["AMANA_DATABASE_URL"] = ""
        self.server_url = f"postgresql://amana:amana@127.0.0.1:{port}/postgres"

    def start(self) -> None:
        run_local_script("pg.sh", "start", env=self.env)

    def stop(self) -> None:
        run_local_script("pg.sh", "stop", env=self.env)

    def restart(self) -> None:
        self.stop()
        self.start()

    def database_url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://amana:amana@127.0.0.1:{self.port}/{database}"

    def execute(self, statement: str, database: str = "postgres") -> None:
        url = self.database_url(database, "postgresql")
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
            connection.execute(statement)


@dataclass
class StackInfrastructure:
    """The cluster, the broker and one migrated template database per service: each stack
    copies the templates (CREATE DATABASE ... TEMPLATE, a fraction of a second)."""

    directory: Path
    postgres: LocalPostgres
    broker: LocalBroker
    stacks: int = 0

    @classmethod
    def start(cls) -> StackInfrastructure:
        # a short path: PostgreSQL's unix socket path is limited to about 100 bytes
        directory = Path(tempfile.mkdtemp(prefix="amana-stack-", dir="/tmp"))
        directory.chmod(0o755)
        infrastructure = cls(
            directory,
            LocalPostgres(directory / "pg", free_port()),
            LocalBroker(directory / "kafka", free_port_pair()),
        )
        try:
            infrastructure.postgres.start()
            infrastructure.broker.start()
            for service in SERVICES:
                infrastructure._migrate_template(service)
        except BaseException:
            infrastructure.close()
            raise
        return infrastructure

    def _migrate_template(self, service: str) -> None:
        template = f"amana_{service}_template"
        self.postgres.execute(f'DROP DATABASE IF EXISTS "{template}"')
        self.postgres.execute(f'CREATE DATABASE "{template}"')
        env = {
            **os.environ,
            "AMANA_ENVIRONMENT": "test",
            f"{prefix(service)}DATABASE_URL": self.postgres.database_url(template),
        }
        subprocess.run(
            [sys.executable, "-m", service, "migrate"],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=180,
        )

    def new_databases(self) -> dict[str, str]:
        """A fresh copy of every service's migrated database: service -> its async URL."""
        self.stacks += 1
        urls = {}
        for service in SERVICES:
            name = f"amana_{service}_s{self.stacks}"
            self.postgres.execute(f'DROP DATABASE IF EXISTS "{name}"')
            self.postgres.execute(f'CREATE DATABASE "{name}" TEMPLATE "amana_{service}_template"')
            urls[service] = self.postgres.database_url(name)
        return urls

    def close(self) -> None:
        for stop in (self.broker.stop, self.postgres.stop):
            with suppress(Exception):
                stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def prefix(service: str) -> str:
    return load_catalog().service(service).prefix


# Fast polls, short leases and backoffs: a scenario takes tens of seconds, and a process killed
# while holding a lease leaves its work to another within seconds.
FAST_SETTINGS: dict[str, dict[str, str]] = {
    "*": {
        "CONSUMER_RETRY_BACKOFF_S": "0.2",
        "CONSUMER_MAX_BACKOFF_S": "2",
        "OUTBOX_PUBLISH_TIMEOUT_S": "5",
        "DB_POOL_SIZE": "5",
        "LOG_LEVEL": "WARNING",
    },
    "payroll": {
        "SCHEDULER_INTERVAL_S": "1",
        "GENERATOR_POLL_S": "0.5",
        "GENERATION_CHUNK_ROWS": "1000",
        "PROJECTION_CONSUMERS": "1",
    },
    "disbursement": {
        "BATCH_SIZE": "5",
        "DISPATCH_INTERVAL_S": "0.2",
        "DISPATCH_TIMEOUT_S": "5",
        "DISPATCH_MAX_ATTEMPTS": "50",
        "DISPATCH_BACKOFF_BASE_S": "0.2",
        "DISPATCH_BACKOFF_CAP_S": "1",
        "DISPATCH_LEASE_S": "10",
        "BREAKER_COOLDOWN_S": "1",
        "EXPIRY_INTERVAL_S": "1",
    },
    "psp_sandbox": {
        "POLL_INTERVAL_S": "0.1",
        "RETRY_BASE_S": "0.2",
        "RETRY_CAP_S": "1",
        "MAX_ATTEMPTS": "100",
        "DELIVERY_TIMEOUT_S": "3",
        "DELIVERY_LEASE_S": "6",
    },
}


@dataclass
class Process:
    name: str  # "payroll-worker", "disbursement-worker-2"
    service: str
    role: Role
    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Stack:
    """One run of the whole stack: fresh databases, every process on its own free port."""

    infrastructure: StackInfrastructure
    databases: Mapping[str, str]
    settings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    """Where this stack's events begin on each topic (the broker outlives stacks)."""
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def postgres(self) -> LocalPostgres:
        return self.infrastructure.postgres

    @property
    def broker(self) -> LocalBroker:
        return self.infrastructure.broker

    @property
    def log_dir(self) -> Path:
        directory = self.infrastructure.directory / f"logs-{self.infrastructure.stacks}"
        directory.mkdir(exist_ok=True)
        return directory

    def url(self, service: str) -> str:
        api = self.processes.get(f"{service}-api") or self.processes[f"{service}-all"]
        return f"http://127.0.0.1:{api.port}"

    def plain_database_url(self, service: str) -> str:
        """The service's database as a libpq URL, for the test's own queries."""
        return self.databases[service].replace("postgresql+asyncpg://", "postgresql://")

    def environment(self, service: str) -> dict[str, str]:
        service_prefix = prefix(service)
        values = {
            **FAST_SETTINGS["*"],
            **FAST_SETTINGS.get(service, {}),
            **self.settings.get(service, {}),
            "DATABASE_URL": self.databases[service],
            "WORKER_PROBES": "true",
        }
        if service in ("provider", "disbursement"):  # they call the sandbox, or accept its URL
            values["ALLOWED_API_HOSTS"] = "127.0.0.1"
            values["ALLOWED_API_PORTS"] = self.url("psp_sandbox").rsplit(":", 1)[1]
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(service_prefix)},
            "AMANA_ENVIRONMENT": "test",
            "AMANA_JWT_SECRET": self.jwt_secret,
            "AMANA_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            **{f"{service_prefix}{key}": value for key, value in values.items()},
        }

    # --- processes --------------------------------------------------------------------------

    def add(self, service: str, role: Role, name: str | None = None) -> Process:
        name = name or f"{service}-{role}"
        process = Process(name, service, role, free_port(), self.log_dir / f"{name}.log")
        self.processes[name] = process
        return process

    async def start(self, *names: str, timeout_s: float = 180) -> None:
        """Starts the named processes and waits until each answers /healthz."""
        for name in names:
            self._spawn(self.processes[name])
        await asyncio.gather(*(self.healthy(name, timeout_s) for name in names))

    def _spawn(self, process: Process) -> None:
        assert not process.running, f"{process.name} is already running"
        command = [sys.executable, "-m", process.service, process.role, "--port", str(process.port)]
        with process.log.open("ab") as log:
            process.popen = subprocess.Popen(
                command,
                env=self.environment(process.service),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def healthy(self, name: str, timeout_s: float = 180) -> None:
        process = self.processes[name]

        async def answers() -> bool:
            if not process.running:
                raise AssertionError(f"{name} exited:\n{self.tail(name)}")
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"http://127.0.0.1:{process.port}/healthz")).is_success

        await until(answers, f"{name} to answer /healthz", timeout_s)

    def kill(self, name: str) -> None:
        """kill -9: no shutdown, no flush, whatever the process was doing."""
        process = self.processes[name]
        assert process.popen is not None and process.running, f"{name} is not running"
        process.popen.send_signal(signal.SIGKILL)
        process.popen.wait(timeout=10)

    async def restart(self, name: str) -> None:
        """kill -9, then start again on the same port."""
        self.kill(name)
        await self.start(name)

    async def start_all(self, split: Collection[str] = SPLIT) -> None:
        """Every service: those in `split` as an API process and a worker process (what a
        test kills), the others as one process serving both (`all`, fewer to start on a
        loaded machine). The APIs first: the disbursement's settings need the sandbox's port."""
        for service in SERVICES:
            self.add(service, "api" if service in split else "all")
        for service in split:
            self.add(service, "worker")
        await self.start(*(p.name for p in self.processes.values() if p.role != "worker"))
        await self.start(*(p.name for p in self.processes.values() if p.role == "worker"))

    def close(self) -> None:
        """SIGTERM to every process, SIGKILL to those still alive 10 s later."""
        alive = [p.popen for p in self.processes.values() if p.popen and p.running]
        for popen in alive:
            popen.terminate()
        deadline = time.monotonic() + 10
        for popen in alive:
            try:
                popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=10)

    def tail(self, name: str, lines: int = 40) -> str:
        log = self.processes[name].log
        return (
            "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
        )

    def logs(self) -> str:
        """The end of every process's log, for a failing test's report."""
        return "\n".join(f"--- {name}\n{self.tail(name, 15)}" for name in self.processes)

    # --- infrastructure faults --------------------------------------------------------------

    async def stop_broker(self) -> None:
        await asyncio.to_thread(self.broker.stop)

    async def start_broker(self) -> None:
        await asyncio.to_thread(self.broker.start)

    async def restart_postgres(self) -> None:
        await asyncio.to_thread(self.postgres.restart)


@asynccontextmanager
async def running_stack(
    infrastructure: StackInfrastructure,
    settings: Mapping[str, Mapping[str, str]] | None = None,
    split: Collection[str] = SPLIT,
) -> AsyncIterator[Stack]:
    """A stack on fresh databases, every process started; all killed at the end. When the
    body fails, the end of every process's log is printed (pytest shows it)."""
    databases = await asyncio.to_thread(infrastructure.new_databases)
    offsets = await skip_history(infrastructure.broker.bootstrap)
    stack = Stack(infrastructure, databases, settings or {}, offsets=offsets)
    try:
        await stack.start_all(split)
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.close()


async def skip_history(bootstrap: str) -> dict[str, dict[int, int]]:
    """Before a stack starts on the shared broker: every consumer group known to the broker
    moves to the topics' ends (earlier stacks' events are not this stack's), and answers the
    end offsets, where this stack's events begin."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        groups = [group for group, _ in await admin.list_consumer_groups()]
    finally:
        await admin.close()
    for group in groups:
        consumer = AIOKafkaConsumer(
            *TOPICS, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            await until(_assigned(consumer), f"group {group} to be assigned", timeout_s=30)
            await consumer.seek_to_end()
            for partition in consumer.assignment():
                await consumer.position(partition)
            await consumer.commit()
        finally:
            await consumer.stop()
    return await end_offsets(bootstrap)


def _assigned(consumer: AIOKafkaConsumer) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        await consumer.getmany(timeout_ms=200)
        return bool(consumer.assignment())

    return check


async def end_offsets(bootstrap: str) -> dict[str, dict[int, int]]:
    """topic -> partition -> end offset, for the service topics and their DLQs."""
    topics = (*TOPICS, *(f"{t}.dlq" for t in TOPICS))
    # subscribed without a group: every partition of the topics is assigned from metadata
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:

        async def every_topic_assigned() -> bool:
            await consumer.getmany(timeout_ms=100)
            return {tp.topic for tp in consumer.assignment()} == set(topics)

        await until(every_topic_assigned, "the topics' partitions", timeout_s=30)
        ends = await consumer.end_offsets(list(consumer.assignment()))
    finally:
        await consumer.stop()
    offsets: dict[str, dict[int, int]] = {topic: {} for topic in topics}
    for tp, offset in ends.items():
        offsets[tp.topic][tp.partition] = offset
    return offsets
