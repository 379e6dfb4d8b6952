"""The disbursement worker: outbox relay and pruning, the consumer of payroll and provider
events, the dispatcher of api batches and the expiry of payments past their window."""

from collections.abc import Sequence

from amana_common.consumers import event_consumer as consumer_of
from amana_common.db import Database
from amana_common.worker import Component, infrastructure_components
from disbursement import consumers
from disbursement.dispatch import Dispatcher
from disbursement.jobs import ExpiryJob
from disbursement.settings import DisbursementSettings

CONSUMER = "disbursement"


def event_consumer(
    settings: DisbursementSettings, database: Database, group_id: str | None = None
) -> Component:
    """Payroll and provider events (topics from the handlers' contracts), in the consumer
    group `group_id` (default `disbursement`), which is also its name in processed_events."""
    handlers = consumers.handlers(settings.batch_size)
    return consumer_of(settings, database, group_id or CONSUMER, handlers)


def worker_components(settings: DisbursementSettings, database: Database) -> Sequence[Component]:
    return [
        *infrastructure_components(settings, database),
        event_consumer(settings, database),
        Dispatcher(settings, database),
        ExpiryJob(settings, database),
    ]
