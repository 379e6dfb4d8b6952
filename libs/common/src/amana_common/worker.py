"""Worker: runs the outbox relay and consumers until SIGTERM/SIGINT, then stops cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
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


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def outbox_relay(settings: ServiceSettings, database: Database) -> Component:
    """The relay that publishes the service's outbox to Kafka; every service's worker runs one."""
    from amana_common.outbox import OutboxRelay

    return OutboxRelay(
        settings.service_name,
        database.sessionmaker,
        settings.kafka_bootstrap,
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_s,
    )
