"""`python -m registry dedupe`: a batch duplicate detection over the whole registry, run here
and now (the API's `POST /duplicates/runs` queues one for the worker instead)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import uvloop
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from amana_common.db import create_database
from amana_common.errors import Problem
from amana_common.settings import database_url_for
from registry import duplicates
from registry.models import DuplicateRun


class DedupeSettings(BaseSettings):
    """What the batch run reads of the registry's configuration (no secrets needed)."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore")

    database_url: str = Field(default_factory=lambda: database_url_for("registry"))


def dedupe_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m registry dedupe")
    parser.add_argument("--actor", default="cli", help="who asked for the run (recorded)")
    arguments = parser.parse_args(argv)
    return uvloop.run(_dedupe(DedupeSettings().database_url, arguments.actor))


async def _dedupe(url: str, actor: str) -> int:
    database = create_database(url, pool_size=2)
    started = time.monotonic()

    def report(run: DuplicateRun) -> None:
        print(
            f"{time.monotonic() - started:7.1f}s  {run.phase or run.status}: "
            f"{run.pairs_scored:,} of {run.pairs_total:,} candidate pairs scored, "
            f"{run.flags_created:,} flags",
            flush=True,
        )

    try:
        async with database.sessionmaker() as session, session.begin():
            try:
                run = await duplicates.request_run(session, actor)
            except Problem as problem:
                print(problem.detail)
                return 1
        claimed = await duplicates.claim_run(database)
        if claimed != run.id:
            print("another run was waiting first; the worker will run this one after it")
            return 1
        finished = await duplicates.execute_run(database, run.id, report)
        print(
            f"run {finished.id} {finished.status} in {time.monotonic() - started:.1f}s: "
            f"{finished.pairs_total:,} candidate pairs, {finished.flags_created:,} flags, "
            f"{finished.blocks_skipped:,} oversized blocks skipped"
        )
        return 0 if finished.status == "done" else 1
    finally:
        await database.dispose()
