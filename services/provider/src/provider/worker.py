from collections.abc import Sequence

from amana_common.db import Database
from amana_common.settings import ServiceSettings
from amana_common.worker import Component, outbox_relay


def worker_components(settings: ServiceSettings, database: Database) -> Sequence[Component]:
    """The provider worker publishes its outbox; it consumes nothing."""
    return [outbox_relay(settings, database)]
