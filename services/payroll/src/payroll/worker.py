"""The payroll worker: outbox relay, projections, the scheduler and the generator.

- The scheduler stores the cycles of active programmes and creates the payroll of each due
  cycle (GENERATING); several schedulers may run, the database keeps one payroll per cycle.
- The generator takes the oldest GENERATING payroll no one holds (a row lock, released if
  the worker dies, so another takes over) and generates it in one REPEATABLE READ
  transaction; its progress is written from a second connection so that it shows meanwhile.
  A payroll whose generation fails for a reason retrying cannot fix, or that failed
  `generation_max_attempts` times, becomes FAILED: an operator may retry it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from uuid import UUID

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.consumers import event_consumer
from amana_common.db import Database
from amana_common.inbox import is_temporary
from amana_common.settings import ServiceSettings
from amana_common.tracing import traced_job
from amana_common.worker import Component, infrastructure_components, wait_or_stop
from payroll import repository, service
from payroll.consumers import BATCH_HANDLERS, HANDLERS
from payroll.domain import Refused
from payroll.service import Progress
from payroll.settings import PayrollSettings

log = logging.getLogger("amana.payroll.worker")

CONSUMER_NAME = "payroll-projections"


def today() -> date:
    return datetime.now(UTC).date()


async def _repeat(
    stop: asyncio.Event, work: Callable[[], Awaitable[bool]], pause_s: float, what: str
) -> None:
    """Runs `work` until stopped, pausing after a round that found nothing to do or failed
    (a failure is logged and retried: the database keeps the work, nothing is lost)."""
    while not stop.is_set():
        try:
            busy = await work()
        except Exception as error:
            log.warning("%s failed, retrying: %r", what, error)
            busy = False
        if not busy:
            await wait_or_stop(stop, pause_s)


class Scheduler:
    def __init__(self, database: Database, settings: PayrollSettings) -> None:
        self.database = database
        self.settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        async def tick() -> bool:
            await self.tick()
            return False

        await _repeat(stop, tick, self.settings.scheduler_interval_s, "scheduler tick")

    async def tick(self, on: date | None = None) -> list[UUID]:
        """Creates the payrolls now due; answers their ids."""
        with traced_job("payroll.schedule"):
            async with self.database.sessionmaker() as session, session.begin():
                created = await service.schedule_due(session, on or today())
        if created:
            log.info("scheduled %d payroll(s) for generation", len(created))
        return created


class Generator:
    def __init__(self, database: Database, settings: PayrollSettings) -> None:
        self.database = database
        self.settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        await _repeat(stop, self.generate_next, self.settings.generator_poll_s, "generation")

    async def generate_next(self) -> bool:
        """Generates one waiting payroll, if any; answers whether there was one."""
        async with self.database.sessionmaker() as session:
            payroll_id, failure = await self._generate_one(session)
        if payroll_id is not None and failure is not None:
            async with self.database.sessionmaker() as session, session.begin():
                await service.fail_payroll(session, payroll_id, failure)
            log.error("payroll %s failed: %s", payroll_id, failure)
        return payroll_id is not None

    async def _generate_one(self, session: AsyncSession) -> tuple[UUID | None, str | None]:
        """Generates the payroll it claims in one transaction; on a failure retrying cannot
        fix, everything is rolled back and the failure is answered for the caller to record."""
        claimed: UUID | None = None
        try:
            async with session.begin():
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                payroll = await repository.claim_generating(session)
                if payroll is None:
                    return None, None
                claimed = payroll.id
                attempts = await self._count_attempt(payroll.id)
                if attempts > self.settings.generation_max_attempts:
                    raise Refused("gave-up", f"gave up after {attempts - 1} attempts")
                with traced_job("payroll.generation", payroll_id=str(payroll.id)):
                    result = await service.generate_payroll(
                        session,
                        payroll,
                        self.settings.eligibility_attributes,
                        self.settings.generation_chunk_rows,
                        self._progress(payroll.id),
                    )
        except Refused as error:
            return claimed, error.message
        except DBAPIError as error:
            if is_temporary(error):
                raise  # the database is away: the payroll stays GENERATING, retried later
            return claimed, _database_failure(error)
        log.info(
            "payroll %s generated: %d eligible, %d lines", claimed, result.eligible, result.lines
        )
        return claimed, None

    async def _count_attempt(self, payroll_id: UUID) -> int:
        async with self.database.sessionmaker() as session, session.begin():
            return await repository.start_attempt(session, payroll_id)

    def _progress(self, payroll_id: UUID) -> Progress:
        async def report(phase: str, done: int, total: int) -> None:
            async with self.database.sessionmaker() as session, session.begin():
                await repository.record_progress(session, payroll_id, phase, done, total)

        return report


def _database_failure(error: DBAPIError) -> str:
    """The error's class and SQLSTATE, never its parameters (they may hold personal data)."""
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return f"database error {type(error.orig).__name__} (SQLSTATE {code})"


def projections(
    settings: ServiceSettings, database: Database, name: str = CONSUMER_NAME
) -> Component:
    """The consumer of registry, provider and disbursement events into the projections, a
    whole poll at a time where the events allow it; `name` is its consumer group and its name
    in processed_events."""
    return event_consumer(settings, database, name, HANDLERS, batch_handlers=BATCH_HANDLERS)


def worker_components(settings: PayrollSettings, database: Database) -> Sequence[Component]:
    return [
        *infrastructure_components(settings, database),
        *(projections(settings, database) for _ in range(settings.projection_consumers)),
        Scheduler(database, settings),
        Generator(database, settings),
    ]
