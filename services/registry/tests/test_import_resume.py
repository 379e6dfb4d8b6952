"""An import whose worker process is killed (SIGKILL) mid-job is resumed by another worker
from the last committed chunk: every household once, every record reported once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
from sqlalchemy import func, select

from amana_common.db import Database
from registry.models import (
    Household,
    HouseholdChange,
    HouseholdSource,
    ImportJob,
    ImportRecord,
    Member,
)

from .imports_support import NDJSON, fhir_lines, ndjson, population

HOUSEHOLDS = 600


def start_worker(database: Database, kafka_bootstrap: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "REGISTRY_DATABASE_URL": database.engine.url.render_as_string(hide_password=False),
        "REGISTRY_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "REGISTRY_ENVIRONMENT": "test",
        "REGISTRY_IMPORT_CHUNK_SIZE": "10",
        "REGISTRY_IMPORT_LEASE_S": "2",
        "REGISTRY_IMPORT_POLL_S": "0.2",
        "REGISTRY_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "registry", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def job_state(database: Database) -> tuple[str, int]:
    async with database.sessionmaker() as session:
        row = (await session.execute(select(ImportJob.status, ImportJob.processed))).one()
    return str(row[0]), int(row[1])


async def wait_for(database: Database, done: bool, deadline_s: float) -> tuple[str, int]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status, processed = await job_state(database)
        if (status == "done") if done else processed >= 100:
            return status, processed
        await asyncio.sleep(0.05)
    raise AssertionError(f"the import did not get there in {deadline_s}s: {status} {processed}")


async def count(database: Database, column: object) -> int:
    async with database.sessionmaker() as session:
        return int(await session.scalar(select(func.count(column))) or 0)  # type: ignore[arg-type]


async def test_a_worker_killed_mid_import_is_resumed_without_doing_a_record_twice(
    committed_client: httpx.AsyncClient, committed_database: Database, kafka_bootstrap: str
) -> None:
    households = population(HOUSEHOLDS, seed=21)
    members = sum(len(h.body["members"]) for h in households)
    started = await committed_client.post(
        "/imports", content=ndjson(fhir_lines(households)).encode(), headers=NDJSON
    )
    assert started.status_code == 202, started.text

    first = start_worker(committed_database, kafka_bootstrap)
    try:
        status, at_kill = await wait_for(committed_database, done=False, deadline_s=120)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    assert status == "running" and 0 < at_kill < HOUSEHOLDS, (status, at_kill)

    second = start_worker(committed_database, kafka_bootstrap)
    try:
        await wait_for(committed_database, done=True, deadline_s=240)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)

    job = (await committed_client.get(started.headers["location"])).json()
    assert (job["processed"], job["created"], job["rejected"]) == (HOUSEHOLDS, HOUSEHOLDS, 0), job
    assert await count(committed_database, Household.id) == HOUSEHOLDS
    assert await count(committed_database, Member.id) == members
    assert await count(committed_database, HouseholdChange.id) == HOUSEHOLDS
    assert await count(committed_database, ImportRecord.position) == HOUSEHOLDS
    async with committed_database.sessionmaker() as session:
        keyed = await session.scalar(
            select(func.count(func.distinct(HouseholdSource.household_id)))
        )
        outcomes = set((await session.scalars(select(ImportRecord.outcome))).all())
    assert keyed == HOUSEHOLDS and outcomes == {"created"}
