"""The disbursement worker: outbox relay, the consumer of payroll and provider events, the
dispatcher of api batches and the expiry of payments past their window."""

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.db import Database
from amana_common.inbox import Handler as EnvelopeHandler
from amana_common.inbox import IdempotentConsumer
from amana_common.worker import Component, outbox_relay
from amana_contracts.base import EventData
from amana_contracts.envelope import CloudEvent, topic_for
from disbursement import consumers
from disbursement.dispatch import Dispatcher
from disbursement.jobs import ExpiryJob
from disbursement.settings import DisbursementSettings

CONSUMER = "disbursement"


def _by_type(handlers: Mapping[type[EventData], consumers.Handler]) -> dict[str, EnvelopeHandler]:
    """Typed handlers (session, payload, envelope) as the idempotent consumer calls them."""

    def envelope_handler(model: type[EventData], handler: consumers.Handler) -> EnvelopeHandler:
        async def handle(session: AsyncSession, event: CloudEvent) -> None:
            await handler(session, model.model_validate(event.data), event)

        return handle

    return {model.cloudevent_type(): envelope_handler(model, h) for model, h in handlers.items()}


def event_consumer(
    settings: DisbursementSettings, database: Database, group_id: str | None = None
) -> Component:
    return IdempotentConsumer(
        CONSUMER,
        database.sessionmaker,
        settings.kafka_bootstrap,
        _by_type(consumers.handlers(settings.batch_size)),
        [topic_for("payroll"), topic_for("provider")],
        max_attempts=settings.consumer_max_attempts,
        group_id=group_id,
    )


def worker_components(settings: DisbursementSettings, database: Database) -> Sequence[Component]:
    return [
        outbox_relay(settings, database),
        event_consumer(settings, database),
        Dispatcher(settings, database),
        ExpiryJob(settings, database),
    ]
