"""Registry duplicate detection at full size: a batch run over 1,000,000 members <= 5 minutes;
checking one new household against that registry p95 <= 100 ms; precision >= 0.95 and
recall >= 0.90 on the generator's injected near-duplicates, over the batch run and over the
single checks (computed against the generator's truth).

The synthetic population generator (seed 11, en_KE, 2% near-duplicates) makes enough
households for 1,000,000 members besides a held-out sample: 500 of its near-duplicates and
500 other households, kept out of the registry to be checked one by one later. The rest is
loaded by the generator's set-based path (COPY) into a fresh `amana_registry_dedupe` database.
Then:

1. `python -m registry dedupe` (the real command, a child process) runs the batch detection;
   its flags are compared with the truth: two households are duplicates when they are copies
   of one generated household (a near-duplicate and its original, or two near-duplicates of
   one original).
2. Each held-out household is written with `service.save_household` and checked with
   `duplicates.flag_candidates` (what an enrolment does), in a transaction rolled back
   afterwards; the check alone is timed (p50/p95/p99), and its flags are compared with the
   truth.

The machine is shared: the load average (1 minute) is sampled during each phase and printed.

    make bench-registry-dedupe    # or: uv run python bench/registry_dedupe.py
    uv run python bench/registry_dedupe.py --reuse   # keep the loaded database (flags cleared)
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path
from uuid import UUID

import uvloop
from _common import at_least, at_most, postgres_server_url, report
from sqlalchemy import text

from amana_common.db import Database, create_database
from amana_common.testing.databases import async_url, migrated_test_database
from registry import duplicates, repository, service
from registry.cleaning import HouseholdDraft, clean_household
from registry.generate import GeneratedHousehold, Generator, GeneratorConfig, load
from registry.generate_cli import GenerateSettings
from registry.reference import cleaning_rules, load_locations
from registry.schemas import HouseholdIn
from registry.settings import RegistrySettings

REPO = Path(__file__).resolve().parents[1]
SERVICE_DIR = REPO / "services" / "registry"
BATCH_BAR_S = 300.0
CHECK_BAR_MS = 100.0
PRECISION_BAR = 0.95
RECALL_BAR = 0.90
SEED = 11
MEMBERS_PER_HOUSEHOLD = 4.2
HELD_OUT_DUPLICATES = 500
HELD_OUT_OTHERS = 500
TODAY = date(2026, 6, 1)


class CpuMeter:
    """CPU time spent by the checks, in this process and in its PostgreSQL backend (from
    /proc, in clock ticks: summed over every check): what a check costs however loaded the
    machine is."""

    def __init__(self) -> None:
        self.backend = 0
        self.own = 0.0
        self.server_ticks = 0
        self.checks = 0
        self._own_start = 0.0
        self._server_start = 0

    def _server(self) -> int:
        try:
            fields = Path(f"/proc/{self.backend}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        return int(fields[11]) + int(fields[12])  # utime, stime

    def start(self) -> None:
        self._own_start = time.process_time()
        self._server_start = self._server()

    def stop(self) -> None:
        self.own += time.process_time() - self._own_start
        self.server_ticks += self._server() - self._server_start
        self.checks += 1

    def summary(self) -> str:
        server = self.server_ticks / os.sysconf("SC_CLK_TCK")
        return (
            f"CPU per check: {self.own / self.checks * 1000:.1f} ms here + "
            f"{server / self.checks * 1000:.1f} ms in PostgreSQL"
        )


class LoadSampler:
    """The 1-minute load average, sampled every few seconds while a phase runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()

    @contextmanager
    def sampling(self) -> Iterator[None]:
        self.samples = [os.getloadavg()[0]]
        self._stop.clear()
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()
            self.samples.append(os.getloadavg()[0])

    def _run(self) -> None:
        while not self._stop.wait(5):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> str:
        return (
            f"load average (1 min) during the run: min {min(self.samples):.1f}, "
            f"mean {sum(self.samples) / len(self.samples):.1f}, max {max(self.samples):.1f} "
            f"on {os.cpu_count()} cores"
        )


def population(members: int) -> list[GeneratedHousehold]:
    households = int(
        (members + (HELD_OUT_DUPLICATES + HELD_OUT_OTHERS) * MEMBERS_PER_HOUSEHOLD)
        / MEMBERS_PER_HOUSEHOLD
        * 1.01
    )
    config = GeneratorConfig(households=households, seed=SEED)
    locations = load_locations(GenerateSettings().locations_csv)
    return list(Generator(config, locations).households())


def split(
    households: list[GeneratedHousehold], members: int
) -> tuple[list[GeneratedHousehold], list[GeneratedHousehold]]:
    """(registry, held out): the held-out sample is never an original of a near-duplicate."""
    rng = random.Random(SEED)
    originals = {h.duplicate_of for h in households if h.duplicate_of}
    copies = [h for h in households if h.duplicate_of]
    others = [h for h in households if not h.duplicate_of and h.code not in originals]
    held = rng.sample(copies, min(HELD_OUT_DUPLICATES, len(copies) // 4)) + rng.sample(
        others, HELD_OUT_OTHERS
    )
    held_codes = {h.code for h in held}
    registry = [h for h in households if h.code not in held_codes]
    loaded = sum(len(h.body["members"]) for h in registry)
    if loaded < members:
        raise SystemExit(f"the population has {loaded} members besides the sample, not {members}")
    return registry, held


def clusters(households: list[GeneratedHousehold]) -> dict[str, str]:
    """Household code -> its cluster (the code of the household it copies, or its own)."""
    return {h.code: h.duplicate_of or h.code for h in households}


def truth_pairs(codes: list[str], cluster_of: dict[str, str]) -> set[frozenset[str]]:
    members: dict[str, list[str]] = defaultdict(list)
    for code in codes:
        members[cluster_of[code]].append(code)
    return {
        frozenset((a, b))
        for group in members.values()
        for i, a in enumerate(group)
        for b in group[i + 1 :]
    }


def precision_recall(
    flagged: set[frozenset[str]], truth: set[frozenset[str]]
) -> tuple[float, float, int, int]:
    true_positives = len(flagged & truth)
    precision = true_positives / len(flagged) if flagged else 1.0
    recall = true_positives / len(truth) if truth else 1.0
    return precision, recall, true_positives, len(flagged) - true_positives


async def load_registry(url: str, registry: list[GeneratedHousehold]) -> dict[UUID, str]:
    database = create_database(url, pool_size=1)
    try:
        await load(database, registry, batch_size=20_000)
        autocommit = database.engine.execution_options(isolation_level="AUTOCOMMIT")
        async with autocommit.connect() as connection:
            await connection.execute(text("VACUUM ANALYZE"))
        return await codes_by_id(database, registry)
    finally:
        await database.dispose()


async def codes_by_id(database: object, registry: list[GeneratedHousehold]) -> dict[UUID, str]:
    """The loader numbers households in load order: the n-th number is the n-th household."""
    assert hasattr(database, "sessionmaker")
    async with database.sessionmaker() as session:
        rows = (
            await session.execute(text("SELECT id FROM households ORDER BY household_number"))
        ).all()
    if len(rows) != len(registry):
        raise SystemExit(f"{len(rows)} households in the database, {len(registry)} generated")
    return {row[0]: household.code for row, household in zip(rows, registry, strict=True)}


async def clear_flags(url: str) -> None:
    database = create_database(url, pool_size=1)
    try:
        async with database.sessionmaker() as session, session.begin():
            await session.execute(text("DELETE FROM duplicate_flags"))
            await session.execute(text("DELETE FROM duplicate_runs"))
            await session.execute(text("DELETE FROM outbox"))
            await session.execute(
                text(
                    "UPDATE households SET status = 'active', duplicate_review_open = false, "
                    "status_reason = NULL WHERE duplicate_review_open OR status <> 'active'"
                )
            )
            await session.execute(text("DELETE FROM household_status_changes"))
            await session.execute(text("DELETE FROM household_changes"))
        autocommit = database.engine.execution_options(isolation_level="AUTOCOMMIT")
        async with autocommit.connect() as connection:
            await connection.execute(text("VACUUM ANALYZE"))
    finally:
        await database.dispose()


def batch_run(url: str) -> float:
    env = os.environ | {"REGISTRY_DATABASE_URL": url, "REGISTRY_LOG_LEVEL": "WARNING"}
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "registry", "dedupe", "--actor", "bench"], env=env, check=True
    )
    return time.monotonic() - started


async def flagged_pairs(url: str, code_of: dict[UUID, str]) -> set[frozenset[str]]:
    database = create_database(url, pool_size=1)
    try:
        async with database.sessionmaker() as session:
            rows = (
                await session.execute(
                    text("SELECT household_id, other_household_id FROM duplicate_flags")
                )
            ).all()
    finally:
        await database.dispose()
    return {frozenset((code_of[a], code_of[b])) for a, b in rows}


async def single_checks(
    url: str, held: list[GeneratedHousehold], code_of: dict[UUID, str]
) -> tuple[list[float], set[frozenset[str]]]:
    """Each held-out household written and checked as an enrolment is, then rolled back."""
    settings = RegistrySettings(environment="test", database_url=url)
    rules = cleaning_rules(settings)
    database = create_database(url, pool_size=1)
    latencies: list[float] = []
    flagging: list[float] = []
    quiet: list[float] = []
    found: set[frozenset[str]] = set()
    cpu = CpuMeter()
    try:
        async with database.sessionmaker() as session:
            cpu.backend = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        for index, generated in enumerate(held):
            body = {
                key: value for key, value in generated.body.items() if key != "payment_preference"
            }
            draft = HouseholdIn.model_validate(body).draft()
            cleaned = service.cleaned_or_refused(clean_household(draft, rules, TODAY))
            cleaned, clashes = await without_held_identifiers(database, cleaned)
            async with database.sessionmaker() as session:
                household = await service.save_household(session, cleaned, "bench")
                started = time.perf_counter()
                cpu.start()
                raised = await duplicates.flag_candidates(
                    session,
                    [household.id],
                    actor="bench",
                    source="enrolment",
                    clashes=[
                        duplicates.IdentifierClash(household.id, holder, scheme)
                        for holder, scheme in clashes
                    ],
                )
                elapsed = (time.perf_counter() - started) * 1000
                cpu.stop()
                if index >= 20:  # the first checks warm the caches and plans
                    latencies.append(elapsed)
                    (flagging if raised else quiet).append(elapsed)
                rows = await session.execute(
                    text(
                        "SELECT household_id, other_household_id FROM duplicate_flags "
                        "WHERE household_id = :h OR other_household_id = :h"
                    ),
                    {"h": household.id},
                )
                for a, b in rows.all():
                    other = b if a == household.id else a
                    found.add(frozenset((generated.code, code_of[other])))
                await session.rollback()
    finally:
        await database.dispose()
    print(
        f"  checks that raised a flag: {len(flagging)}, p95 {percentile(flagging, 0.95):.1f} ms; "
        f"checks that found nothing: {len(quiet)}, p95 {percentile(quiet, 0.95):.1f} ms; "
        f"{cpu.summary()}",
        flush=True,
    )
    return latencies, found


async def without_held_identifiers(
    database: Database, draft: HouseholdDraft
) -> tuple[HouseholdDraft, list[tuple[UUID, str]]]:
    """An import's way with an identifier another household holds (the enrolment API answers
    409 naming the holder): the record is stored without it, and the clash is flagged."""
    async with database.sessionmaker() as session:
        holders = await repository.identifier_holders(
            session,
            [(i.scheme, i.value) for m in draft.members for i in m.identifiers],
            None,
        )
    held = {(h.scheme, h.value): h.household_id for h in holders}
    members = tuple(
        replace(
            member,
            identifiers=tuple(i for i in member.identifiers if (i.scheme, i.value) not in held),
        )
        for member in draft.members
    )
    return replace(draft, members=members), [
        (holder, scheme) for (scheme, _), holder in held.items()
    ]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def database_ready(reuse: bool) -> str:
    url = async_url(postgres_server_url(), "amana_registry_dedupe")
    if reuse:
        return url
    return await migrated_test_database(postgres_server_url(), "registry", SERVICE_DIR, "dedupe")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep a database already loaded")
    arguments = parser.parse_args()
    load_average = LoadSampler()
    started = time.monotonic()
    households = population(arguments.members)
    registry, held = split(households, arguments.members)
    cluster_of = clusters(households)
    loaded_members = sum(len(h.body["members"]) for h in registry)
    print(
        f"generated {len(households):,} households in {time.monotonic() - started:.0f}s: "
        f"{len(registry):,} ({loaded_members:,} members) for the registry, "
        f"{len(held):,} held out ({sum(1 for h in held if h.duplicate_of)} near-duplicates)",
        flush=True,
    )
    url = uvloop.run(database_ready(arguments.reuse))
    if arguments.reuse:
        uvloop.run(clear_flags(url))
        database = create_database(url, pool_size=1)
        code_of = uvloop.run(_codes(database, registry))
    else:
        started = time.monotonic()
        code_of = uvloop.run(load_registry(url, registry))
        print(f"loaded in {time.monotonic() - started:.0f}s", flush=True)

    with load_average.sampling():
        seconds = batch_run(url)
    batch_load = load_average.summary()
    flagged = uvloop.run(flagged_pairs(url, code_of))
    truth = truth_pairs([h.code for h in registry], cluster_of)
    precision, recall, hits, misses = precision_recall(flagged, truth)

    with load_average.sampling():
        latencies, found = uvloop.run(single_checks(url, held, code_of))
    check_load = load_average.summary()
    in_cluster: dict[str, list[str]] = defaultdict(list)
    for h in registry:
        in_cluster[cluster_of[h.code]].append(h.code)
    single_truth = {
        frozenset((h.code, other)) for h in held for other in in_cluster[cluster_of[h.code]]
    }
    single_precision, single_recall, single_hits, single_misses = precision_recall(
        found, single_truth
    )
    p50, p95, p99 = (percentile(latencies, share) for share in (0.5, 0.95, 0.99))

    members = f"{loaded_members:,} members"
    verdicts = [
        report(
            f"batch duplicate detection, {members}",
            seconds,
            "s",
            at_most(BATCH_BAR_S),
            detail=batch_load,
        ),
        report(
            "batch precision",
            precision,
            "",
            at_least(PRECISION_BAR),
            detail=f"{hits:,} true pairs flagged, {misses:,} false",
        ),
        report(
            "batch recall",
            recall,
            "",
            at_least(RECALL_BAR),
            detail=f"{len(truth):,} true pairs in the registry",
        ),
        report(
            f"check of one new household p95, {members}",
            p95,
            "ms",
            at_most(CHECK_BAR_MS),
            detail=f"{len(latencies)} checks: p50 {p50:.1f} ms, p99 {p99:.1f} ms; {check_load}",
        ),
        report(
            "single-check precision",
            single_precision,
            "",
            at_least(PRECISION_BAR),
            detail=f"{single_hits} true pairs flagged, {single_misses} false",
        ),
        report(
            "single-check recall",
            single_recall,
            "",
            at_least(RECALL_BAR),
            detail=f"{len(single_truth)} true pairs",
        ),
    ]
    return 0 if all(verdicts) else 1


async def _codes(database: object, registry: list[GeneratedHousehold]) -> dict[UUID, str]:
    try:
        return await codes_by_id(database, registry)
    finally:
        await database.dispose()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
