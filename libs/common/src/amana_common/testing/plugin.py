"""pytest plugin (entry point `amana`): real PostgreSQL and Kafka for every Amana test suite.

Fixtures:
  amana_infrastructure  the server URL and broker address (see `infrastructure.py` for where
                        they come from), printed once in the test header
  postgres_server_url   libpq URL of the PostgreSQL server
  kafka_bootstrap       bootstrap address of the Kafka broker
  migrated_database     factory: (service, service_dir, purpose="test") -> async URL of a
                        fresh, migrated `amana_<service>_<purpose>` database (once a session)
  own_broker            factory: a broker of the test's own, on free ports, that it may stop
                        and start
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from amana_common.testing.databases import migrated_test_database
from amana_common.testing.infrastructure import (
    BrokerFactory,
    Infrastructure,
    LocalBroker,
    free_port_pair,
    provide_infrastructure,
)


class MigratedDatabase(Protocol):
    def __call__(
        self, service: str, service_dir: Path, purpose: str = "test"
    ) -> Awaitable[str]: ...


_infrastructure: Infrastructure | None = None


def _get_infrastructure() -> Infrastructure:
    global _infrastructure
    if _infrastructure is None:
        _infrastructure = provide_infrastructure()
    return _infrastructure


def pytest_report_header(config: pytest.Config) -> list[str]:
    return ["amana: PostgreSQL and Kafka are real; they are provided on first use"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Says, at the end of every run, which real servers the tests talked to."""
    if _infrastructure is None:
        return
    terminalreporter.write_sep("-", "amana infrastructure")
    for line in _infrastructure.describe():
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _infrastructure is not None:
        _infrastructure.close()


@pytest.fixture(scope="session")
def amana_infrastructure() -> Infrastructure:
    infrastructure = _get_infrastructure()
    print(
        f"\namana: PostgreSQL {_redacted(infrastructure.postgres_url)}, "
        f"Kafka {infrastructure.kafka_bootstrap} (from {infrastructure.origin})"
    )
    return infrastructure


@pytest.fixture(scope="session")
def postgres_server_url(amana_infrastructure: Infrastructure) -> str:
    return amana_infrastructure.postgres_url


@pytest.fixture(scope="session")
def kafka_bootstrap(amana_infrastructure: Infrastructure) -> str:
    return amana_infrastructure.kafka_bootstrap


@pytest.fixture(scope="session")
async def migrated_database(postgres_server_url: str) -> AsyncIterator[MigratedDatabase]:
    created: dict[tuple[str, str], str] = {}

    async def migrated(service: str, service_dir: Path, purpose: str = "test") -> str:
        if (service, purpose) not in created:
            created[service, purpose] = await migrated_test_database(
                postgres_server_url, service, service_dir, purpose
            )
        return created[service, purpose]

    yield migrated


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerFactory]:
    brokers: list[LocalBroker] = []

    def make() -> LocalBroker:
        broker = LocalBroker(tmp_path_factory.mktemp("broker"), free_port_pair())
        broker.start()
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


__all__ = ["BrokerFactory", "MigratedDatabase"]
