"""The scheduler and the generator with real committing sessions: several of each racing,
progress seen from another connection while a generation runs, a worker dying mid-way, and a
failed generation retried by an operator."""

import asyncio
from datetime import date
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import func, select, text

from amana_common.db import Database, create_database
from amana_common.errors import Problem
from amana_common.testing.databases import outbox_events
from payroll import repository, service
from payroll.models import Cycle, Payroll, PayrollLine
from payroll.schemas import ProgrammeIn
from payroll.service import Progress
from payroll.settings import PayrollSettings
from payroll.worker import Generator, Scheduler

from .conftest import ATTRIBUTES, payroll_settings
from .factories import programme_body, provider
from .test_generation import BUDGET, seed

START = date(2026, 1, 1)
GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}


async def active_programme(database: Database, code: str, **overrides: Any) -> UUID:
    body = ProgrammeIn.model_validate(programme_body(code=code, **overrides))
    async with database.sessionmaker() as session, session.begin():
        programme = await service.create_programme(session, body, "manager-1", ATTRIBUTES, START)
        await service.change_programme_status(session, programme.id, "active", None, "manager-1")
    return programme.id


async def payroll_rows(database: Database) -> list[Payroll]:
    async with database.sessionmaker() as session:
        return list((await session.scalars(select(Payroll))).all())


async def line_count(database: Database, payroll_id: UUID) -> int:
    async with database.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(PayrollLine.payroll_id == payroll_id)
        )
        return int(count or 0)


async def test_racing_schedulers_create_exactly_one_payroll_per_due_cycle(
    committed_database: Database,
) -> None:
    await seed(committed_database)
    programmes = [await active_programme(committed_database, f"CT-{n:02d}") for n in range(12)]
    settings = payroll_settings()
    schedulers = [Scheduler(committed_database, settings) for _ in range(4)]

    # 7 March: cycle 3 (paid from 10 March, generated from the 5th) is due; the windows of
    # cycles 1 and 2 have closed.
    created = await asyncio.gather(*(s.tick(on=date(2026, 3, 7)) for s in schedulers))
    after_restart = await Scheduler(committed_database, settings).tick(on=date(2026, 3, 7))

    assert sum(len(ids) for ids in created) == 12
    assert after_restart == []
    rows = await payroll_rows(committed_database)
    assert sorted(p.programme_id for p in rows) == sorted(programmes)
    assert {(p.status, p.trigger, p.generated_by) for p in rows} == {
        ("GENERATING", "schedule", "system:scheduler")
    }
    async with committed_database.sessionmaker() as session:
        sequences = set(
            (
                await session.scalars(
                    select(Cycle.sequence).where(Cycle.id.in_([p.cycle_id for p in rows]))
                )
            ).all()
        )
    assert sequences == {3}


async def test_the_scheduler_leaves_suspended_programmes_and_rejected_cycles_alone(
    committed_database: Database,
) -> None:
    await seed(committed_database)
    suspended = await active_programme(committed_database, "CT-SUSP")
    async with committed_database.sessionmaker() as session, session.begin():
        await service.change_programme_status(session, suspended, "suspended", "Audit", "m")
    settings = payroll_settings()

    assert await Scheduler(committed_database, settings).tick(on=date(2026, 3, 7)) == []


async def test_payrolls_are_still_created_once_postgresql_plans_the_statements_generically(
    committed_database: Database,
) -> None:
    """PostgreSQL plans a prepared statement generically after five runs (the scheduler runs
    its statement every tick, on the same pooled connections): the ON CONFLICT naming the
    partial unique index must still find it, which it cannot when the index's predicate is
    sent as a parameter (the fault suite's scheduler stopped after its sixth tick)."""
    await seed(committed_database)
    programme_id = await active_programme(committed_database, "CT-GENERIC")

    async with committed_database.sessionmaker() as session, session.begin():
        await session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        scheduled = await service.schedule_due(session, date(2026, 3, 7))
        triggered = await service.trigger_payroll(session, programme_id, 4, "manager-1")

    assert len(scheduled) == 1
    assert {p.id for p in await payroll_rows(committed_database)} == {scheduled[0], triggered.id}


async def test_an_operator_and_the_scheduler_racing_for_a_cycle_make_one_payroll(
    committed_database: Database,
) -> None:
    await seed(committed_database)
    programme_id = await active_programme(committed_database, "CT-RACE")

    async def operator() -> str:
        try:
            async with committed_database.sessionmaker() as session, session.begin():
                await service.trigger_payroll(session, programme_id, 3, "manager-1")
            return "created"
        except Problem as problem:
            return problem.slug

    outcomes = await asyncio.gather(
        operator(),
        Scheduler(committed_database, payroll_settings()).tick(on=date(2026, 3, 7)),
        operator(),
    )

    assert len(await payroll_rows(committed_database)) == 1
    assert sum(1 for o in outcomes if o == "created" or (isinstance(o, list) and o)) == 1


async def triggered(database: Database, **overrides: Any) -> UUID:
    await seed(database)
    programme_id = await active_programme(
        database, "CT-GEN", budget_per_cycle_minor=BUDGET, **overrides
    )
    async with database.sessionmaker() as session, session.begin():
        payroll = await service.trigger_payroll(session, programme_id, 1, "manager-1")
    return payroll.id


async def test_racing_generators_generate_a_payroll_once(committed_database: Database) -> None:
    payroll_id = await triggered(committed_database)
    generators = [Generator(committed_database, payroll_settings()) for _ in range(5)]

    worked = await asyncio.gather(*(g.generate_next() for g in generators))

    assert sorted(worked) == [False] * 4 + [True]
    (payroll,) = await payroll_rows(committed_database)
    assert (payroll.status, payroll.line_count) == ("PENDING_APPROVAL", 3)
    assert await line_count(committed_database, payroll_id) == 3
    generated = [e for e in await outbox_events(committed_database) if e.name == "PayrollGenerated"]
    assert len(generated) == 1


class Watched(Generator):
    """Looks, from a connection of its own, at what others see after each progress report."""

    def __init__(self, database: Database, settings: PayrollSettings) -> None:
        super().__init__(database, settings)
        self.seen: list[tuple[str, int, int, str, int]] = []

    def _progress(self, payroll_id: UUID) -> Progress:
        report = super()._progress(payroll_id)

        async def watched(phase: str, done: int, total: int) -> None:
            await report(phase, done, total)
            async with self.database.sessionmaker() as other:
                progress = await repository.get_progress(other, payroll_id)
                payroll = await repository.get_payroll(other, payroll_id)
            assert progress is not None and payroll is not None
            lines = await line_count(self.database, payroll_id)
            self.seen.append(
                (progress.phase, progress.rows_done, progress.rows_total, payroll.status, lines)
            )

        return watched


async def test_progress_shows_while_the_payroll_is_generated_and_nothing_else_does(
    committed_database: Database,
) -> None:
    payroll_id = await triggered(committed_database)
    generator = Watched(committed_database, payroll_settings())

    assert await generator.generate_next()

    assert generator.seen[0] == ("evaluating", 0, 0, "GENERATING", 0)
    assert ("writing_lines", 3, 3, "GENERATING", 0) in generator.seen
    assert generator.seen[-1] == ("done", 3, 3, "GENERATING", 0)
    assert (await payroll_rows(committed_database))[0].status == "PENDING_APPROVAL"
    assert await line_count(committed_database, payroll_id) == 3


async def test_a_worker_that_dies_mid_generation_leaves_it_to_another(
    committed_database: Database,
) -> None:
    payroll_id = await triggered(committed_database)
    generator = Generator(committed_database, payroll_settings())

    async with committed_database.sessionmaker() as dying:
        await dying.begin()
        assert await repository.claim_generating(dying) is not None
        assert await generator.generate_next() is False, "held by the other worker"
        await dying.rollback()  # its connection ends: the lock goes with it

    assert await generator.generate_next() is True
    assert await line_count(committed_database, payroll_id) == 3


async def test_a_failed_generation_is_retried_by_an_operator_who_becomes_a_maker(
    committed_database: Database,
) -> None:
    payroll_id = await triggered(committed_database)
    # The deployment dropped the pmt_score attribute the programme's priority uses.
    assert await Generator(
        committed_database, payroll_settings(eligibility_attributes={})
    ).generate_next()
    (failed,) = await payroll_rows(committed_database)
    assert failed.status == "FAILED"
    assert failed.failure is not None and "budget_priority.0.by" in failed.failure
    assert await line_count(committed_database, payroll_id) == 0

    async with committed_database.sessionmaker() as session, session.begin():
        retried = await service.retry_payroll(session, payroll_id, "manager-2")
    assert (retried.status, retried.changed_by) == ("GENERATING", "manager-2")
    assert await Generator(committed_database, payroll_settings()).generate_next()

    async with committed_database.sessionmaker() as session, session.begin():
        with pytest.raises(Problem) as refused:
            await service.approve_payroll(session, payroll_id, "manager-2")
    assert refused.value.slug == "maker-checker"
    async with committed_database.sessionmaker() as session, session.begin():
        approved = await service.approve_payroll(session, payroll_id, "checker-1")
    assert approved.status == "APPROVED"


async def test_a_generation_that_keeps_failing_gives_up(committed_database: Database) -> None:
    payroll_id = await triggered(committed_database)
    settings = payroll_settings(generation_max_attempts=1)
    async with committed_database.sessionmaker() as session, session.begin():
        await repository.start_attempt(session, payroll_id)  # an attempt that died

    assert await Generator(committed_database, settings).generate_next()

    (payroll,) = await payroll_rows(committed_database)
    assert payroll.status == "FAILED"
    assert payroll.failure == "gave up after 1 attempts"


async def test_projection_of_a_provider_keeps_only_newer_snapshots(
    committed_database: Database,
) -> None:
    from .factories import project

    await project(committed_database, provider(version=2, status="suspended"), provider(version=1))
    async with committed_database.sessionmaker() as session:
        status = await session.scalar(select(repository.providers.c.status))
    assert status == "suspended"


async def test_the_scheduler_and_operators_still_insert_once_statements_run_from_a_generic_plan(
    committed_database: Database,
) -> None:
    """PostgreSQL plans a prepared statement generically after its fifth run on a connection,
    and a bound value in ON CONFLICT's index predicate can then match no index: a worker's
    scheduler failed every tick after its first minutes. Forced generic plans from the start."""
    await seed(committed_database)
    programme_id = await active_programme(committed_database, "CT-GENERIC")
    url = committed_database.engine.url.render_as_string(hide_password=False)
    generic = create_database(url, pool_size=1, session_settings=GENERIC_PLANS)
    try:
        scheduler = Scheduler(generic, payroll_settings())
        created = await scheduler.tick(on=date(2026, 3, 7))
        assert await scheduler.tick(on=date(2026, 3, 7)) == []
        for sequence in (4, 5):
            async with generic.sessionmaker() as session, session.begin():
                await service.trigger_payroll(session, programme_id, sequence, "manager-1")
    finally:
        await generic.engine.dispose()
    assert len(created) == 1
    assert len(await payroll_rows(committed_database)) == 3
