"""Worker: runs the outbox relay and consumers until SIGTERM/SIGINT, then stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from amana_common.db import Database
    from amana_common.settings import ServiceSettings

log = logging.getLogger("amana.worker")


class Component(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


async def run_components(components: Sequence[Component], stop: asyncio.Event) -> None:
    """Runs every component; if one crashes, the others are stopped and the error re-raised."""
    tasks = [asyncio.create_task(c.run(stop), name=type(c).__name__) for c in components]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                log.error("worker component %s crashed: %r", task.get_name(), task.exception())
                stop.set()
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleeps `seconds`, or less when `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def outbox_relay(settings: ServiceSettings, database: Database) -> Component:
    """The relay that publishes the service's outbox to Kafka; every service's worker runs one."""
    from amana_common.kafka import kafka_connection
    from amana_common.outbox import OutboxRelay, RelayLimits

    limits = RelayLimits(
        batch_size=settings.outbox_batch_size,
        batch_max_bytes=settings.outbox_batch_max_bytes,
        max_attempts=settings.outbox_max_attempts,
        publish_timeout_s=settings.outbox_publish_timeout_s,
        poll_interval_s=settings.outbox_poll_interval_s,
        metrics_interval_s=settings.outbox_metrics_interval_s,
    )
    return OutboxRelay(
        settings.service_name, database.sessionmaker, kafka_connection(settings), limits
    )


def retention_pruner(settings: ServiceSettings, database: Database) -> Component:
    """Deletes processed events and idempotency keys past their retention, hourly."""
    from amana_common.retention import Retention, RetentionPruner

    retention = Retention(
        processed_events=timedelta(days=settings.processed_events_retention_days),
        idempotency_keys=timedelta(days=settings.idempotency_keys_retention_days),
        interval_s=settings.retention_interval_s,
    )
    return RetentionPruner(database.sessionmaker, retention)


def infrastructure_components(settings: ServiceSettings, database: Database) -> list[Component]:
    """What every service's worker runs besides its consumers: the relay and the pruner."""
    return [outbox_relay(settings, database), retention_pruner(settings, database)]
