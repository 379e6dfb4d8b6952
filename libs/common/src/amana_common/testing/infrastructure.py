"""Where tests get a real PostgreSQL server and a real Kafka broker.

In this order: from `AMANA_DATABASE_URL` / `AMANA_KAFKA_BOOTSTRAP`; else from testcontainers when
a Docker engine answers (`docker info` succeeds); else by starting the local processes of
`deploy/local` (an initdb cluster and a KRaft broker resolved from Maven Central).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

POSTGRES_IMAGE = "postgres:16-alpine"
KAFKA_IMAGE = "apache/kafka:4.1.1"


def repo_root() -> Path:
    """The checkout holding deploy/local (this package is installed editable from it)."""
    if explicit := os.environ.get("AMANA_REPO_ROOT"):
        return Path(explicit)
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "deploy" / "local" / "pg.sh").exists():
                return candidate
    raise RuntimeError("cannot find the Amana checkout (deploy/local): set AMANA_REPO_ROOT")


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [shutil.which("docker") or "docker", "info"],
            capture_output=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def run_local_script(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs deploy/local/<script>; answers its stdout, raising with its stderr on failure."""
    path = repo_root() / "deploy" / "local" / script
    result = subprocess.run(  # noqa: S603 - our own script, arguments from our code
        [shutil.which("bash") or "/bin/bash", str(path), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    return result.stdout.strip()


@dataclass
class Infrastructure:
    """A PostgreSQL server URL (libpq form, any database) and a Kafka bootstrap address."""

    postgres_url: str
    kafka_bootstrap: str
    origin: str
    _cleanup: ExitStack = field(default_factory=ExitStack, repr=False)

    def close(self) -> None:
        self._cleanup.close()

    def describe(self) -> list[str]:
        return [
            f"PostgreSQL: {_postgres_version(self.postgres_url)} at "
            f"{make_url(self.postgres_url).render_as_string(hide_password=True)} ({self.origin})",
            f"Kafka: {_kafka_description(self.kafka_bootstrap)} ({self.origin})",
        ]


def _postgres_version(url: str) -> str:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            row = connection.execute("SHOW server_version").fetchone()
    except psycopg.Error as error:
        return f"unreachable ({error.__class__.__name__})"
    return f"server {row[0] if row else '?'}"


def _kafka_description(bootstrap: str) -> str:
    """The broker's own version, as its jar names it when it is the local broker."""
    jars = sorted((repo_root() / ".local" / "kafka" / "libs").glob("kafka_2.13-*.jar"))
    local = bootstrap == "127.0.0.1:59092" and jars
    version = jars[-1].name.removeprefix("kafka_2.13-").removesuffix(".jar") if local else None
    return (
        f"Apache Kafka {version} broker (KRaft) at {bootstrap}"
        if version
        else f"broker at {bootstrap}"
    )


def provide_infrastructure() -> Infrastructure:
    postgres_url = os.environ.get("AMANA_DATABASE_URL")
    kafka_bootstrap = os.environ.get("AMANA_KAFKA_BOOTSTRAP")
    if postgres_url and kafka_bootstrap:
        return Infrastructure(postgres_url, kafka_bootstrap, "environment")
    if docker_engine_answers():
        return _from_testcontainers(postgres_url, kafka_bootstrap)
    return _from_local_processes(postgres_url, kafka_bootstrap)


def _from_local_processes(postgres_url: str | None, kafka_bootstrap: str | None) -> Infrastructure:
    if postgres_url is None:
        run_local_script("pg.sh", "start")
        postgres_url = run_local_script("pg.sh", "url")
    if kafka_bootstrap is None:
        run_local_script("kafka.sh", "start")
        kafka_bootstrap = run_local_script("kafka.sh", "bootstrap")
    return Infrastructure(postgres_url, kafka_bootstrap, "local processes (deploy/local)")


def _from_testcontainers(postgres_url: str | None, kafka_bootstrap: str | None) -> Infrastructure:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    stack = ExitStack()
    if postgres_url is None:
        postgres = stack.enter_context(PostgresContainer(POSTGRES_IMAGE, driver=None))
        postgres_url = postgres.get_connection_url()
    if kafka_bootstrap is None:
        kafka = stack.enter_context(KafkaContainer(KAFKA_IMAGE).with_kraft())
        kafka_bootstrap = kafka.get_bootstrap_server()
        _create_topics(kafka_bootstrap)
    return Infrastructure(postgres_url, kafka_bootstrap, "testcontainers", stack)


def _create_topics(bootstrap: str) -> None:
    import asyncio

    from amana_common.kafka import KafkaConnection
    from amana_common.topics import SINGLE_BROKER, amana_topics, ensure_topics_when_ready

    asyncio.run(
        ensure_topics_when_ready(KafkaConnection(bootstrap), amana_topics(), 6, SINGLE_BROKER, 60)
    )


class LocalBroker:
    """A broker of this test's own, which the test may stop and start (outage tests).

    It shares the jars of the main local broker but has its own port and storage, so stopping
    it never disturbs other tests, whatever broker they use.
    """

    def __init__(self, state_dir: Path, port: int) -> None:
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = {
            "AMANA_LOCAL_DIR": str(state_dir),
            "AMANA_KAFKA_PORT": str(port),
            "AMANA_KAFKA_LIBS": str(repo_root() / ".local" / "kafka" / "libs"),
            "AMANA_KAFKA_BOOTSTRAP": "",
        }

    def start(self) -> None:
        run_local_script("kafka.sh", "start", env=self.env)

    def stop(self) -> None:
        run_local_script("kafka.sh", "stop", env=self.env)


def free_port_pair() -> int:
    """A loopback port that is free, and so is the next one (a local broker's controller)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")


BrokerFactory = Callable[[], LocalBroker]
