"""pytest fixtures of the whole-stack harness; a conftest imports them to use them."""

from collections.abc import Iterator

import pytest

from .harness import StackInfrastructure


@pytest.fixture(scope="session")
def stack_infrastructure() -> Iterator[StackInfrastructure]:
    """A PostgreSQL cluster and a Kafka broker of the harness's own, on free ports, with every
    service's migrated template database: started once a session, stopped at its end."""
    infrastructure = StackInfrastructure.start()
    yield infrastructure
    infrastructure.close()
