from collections.abc import Sequence

from amana_common.db import Database
from amana_common.settings import ServiceSettings
from amana_common.worker import Component, infrastructure_components


def worker_components(settings: ServiceSettings, database: Database) -> Sequence[Component]:
    """The provider worker publishes its outbox and prunes; it consumes nothing."""
    return infrastructure_components(settings, database)
