"""The analytics worker: one consumer of every topic, applying polled batches at once.

Analytics publishes nothing, so it runs no outbox relay.
"""

from __future__ import annotations

from collections.abc import Sequence

from amana_common.consumers import event_consumer
from amana_common.db import Database
from amana_common.worker import Component
from analytics import consumers
from analytics.settings import AnalyticsSettings


def ingest_consumer(settings: AnalyticsSettings, database: Database) -> Component:
    return event_consumer(
        settings,
        database,
        settings.consumer_name,
        {},
        batch_handlers=consumers.batch_handlers(settings.pseudonym_key.encode()),
        on_unknown_type="skip",
    )


def worker_components(settings: AnalyticsSettings, database: Database) -> Sequence[Component]:
    return [ingest_consumer(settings, database)]
