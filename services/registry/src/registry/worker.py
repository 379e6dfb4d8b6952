from collections.abc import Sequence

from amana_common.db import Database
from amana_common.settings import ServiceSettings
from amana_common.worker import Component, infrastructure_components
from registry.consumers import provider_projection


def worker_components(settings: ServiceSettings, database: Database) -> Sequence[Component]:
    """The registry worker publishes its outbox, prunes, and projects provider events."""
    return [*infrastructure_components(settings, database), provider_projection(settings, database)]
