"""Queries of the duplicate detection and review. Nothing here commits.

Blocking: a member's `match_keys` (migration 0006: Double Metaphone codes of the name's words
with the date of birth, pairs of codes with the year of birth) and the households' and
members' phones. Two households are compared only when they share a key, so the work grows
with the pairs inside blocks, never with the registry squared; a key held by more than
`max_block` households (a default date of birth, a phone shared by a whole village) says
nothing and is skipped by the batch run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.pagination import keyset
from registry.matching import HouseholdRecord, block_area, person
from registry.models import DuplicateFlag, DuplicateRun, Household
from registry.repository import within

# --- single checks ---------------------------------------------------------------------------

# Index lookups only (GIN on match_keys, btree on phones); each hit says whether its key
# counts anywhere (`b` keys, phones) or only within the probe's area, which is checked on the
# households' locations read by primary key. (Joining the households into this query, or
# reading their area in it, made PostgreSQL plan it a hundred times slower.)
PROBE_HITS = text(
    """
    WITH probe AS (
        SELECT DISTINCT m.household_id AS probe, key
        FROM members m CROSS JOIN LATERAL unnest(m.match_keys) AS key
        WHERE m.household_id = ANY(CAST(:ids AS uuid[]))
    ), phones AS (
        SELECT h.id AS probe, h.phone FROM households h
        WHERE h.id = ANY(CAST(:ids AS uuid[])) AND h.phone IS NOT NULL
        UNION
        SELECT m.household_id, m.phone FROM members m
        WHERE m.household_id = ANY(CAST(:ids AS uuid[])) AND m.phone IS NOT NULL
    )
    SELECT p.probe, o.household_id, left(p.key, 1) = 'b'
    FROM probe p JOIN members o ON o.match_keys @> ARRAY[p.key]
    WHERE o.household_id <> p.probe
    UNION ALL
    SELECT p.probe, o.id, true FROM phones p JOIN households o ON o.phone = p.phone
    WHERE o.id <> p.probe
    UNION ALL
    SELECT p.probe, o.household_id, true FROM phones p JOIN members o ON o.phone = p.phone
    WHERE o.household_id <> p.probe
    """
)
FLAGGED_PAIRS = text(
    """
    SELECT f.household_id, f.other_household_id
    FROM unnest(CAST(:a AS uuid[]), CAST(:b AS uuid[])) AS pair(a, b)
    JOIN duplicate_flags f ON f.household_id = pair.a AND f.other_household_id = pair.b
    WHERE f.status <> 'resolved'
    """
)


async def probe_candidates(
    session: AsyncSession, household_ids: Sequence[UUID], per_household: int
) -> list[tuple[UUID, UUID]]:
    """For each of `household_ids`, the households sharing a blocking key (`d` and `y` keys
    within its area) or a phone with it, most shared first, at most `per_household`. Exited
    households and pairs already flagged or decided are left out later (`household_records`,
    `flagged_pairs`)."""
    if not household_ids:
        return []
    hits = (await session.execute(PROBE_HITS, {"ids": list(household_ids)})).all()
    located = {h for hit in hits if not hit[2] for h in hit[:2]}
    areas = (
        {
            household_id: block_area(code)
            for household_id, code in (
                await session.execute(
                    select(Household.id, Household.location_code).where(Household.id.in_(located))
                )
            ).all()
        }
        if located
        else {}
    )
    shared: dict[tuple[UUID, UUID], int] = defaultdict(int)
    for probe, other, anywhere in hits:
        if anywhere or areas.get(probe) == areas.get(other):
            shared[(probe, other)] += 1
    ranked = sorted(shared.items(), key=lambda item: (item[0][0], -item[1], item[0][1]))
    kept: dict[UUID, int] = defaultdict(int)
    candidates = []
    for (probe, other), _ in ranked:
        if kept[probe] < per_household:
            kept[probe] += 1
            candidates.append((probe, other))
    return candidates


async def flagged_pairs(
    session: AsyncSession, pairs: Sequence[tuple[UUID, UUID]]
) -> set[tuple[UUID, UUID]]:
    """Which of these ordered pairs a flag names that is not resolved (open or decided)."""
    if not pairs:
        return set()
    rows = await session.execute(
        FLAGGED_PAIRS, {"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}
    )
    return {(a, b) for a, b in rows.all()}


RECORDS = text(
    """
    SELECT h.id, h.location_code, h.address, h.phone, h.latitude, h.longitude, h.status,
           m.id, m.given_name, m.family_name, m.date_of_birth, m.sex, m.relationship, m.phone,
           coalesce(i.schemes, '{}'), coalesce(i.vals, '{}')
    FROM households h
    JOIN members m ON m.household_id = h.id
    LEFT JOIN LATERAL (
        SELECT array_agg(scheme::text) AS schemes, array_agg(value::text) AS vals
        FROM member_identifiers WHERE member_id = m.id
    ) i ON true
    WHERE h.id = ANY(CAST(:ids AS uuid[]))
    ORDER BY h.id, m.position
    """
)


async def household_records(
    session: AsyncSession, household_ids: Sequence[UUID]
) -> dict[UUID, HouseholdRecord]:
    """The households as the comparison sees them, in one query."""
    if not household_ids:
        return {}
    rows = (await session.execute(RECORDS, {"ids": list(set(household_ids))})).all()
    fields: dict[UUID, tuple[Any, ...]] = {}
    members: dict[UUID, list[Any]] = {}
    for row in rows:
        household_id = row[0]
        fields.setdefault(household_id, row[1:7])
        members.setdefault(household_id, []).append(
            person(
                row[7],
                row[8],
                row[9],
                row[10],
                row[11],
                row[12],
                zip(row[14], row[15], strict=True),
                row[13],
            )
        )
    return {
        household_id: HouseholdRecord(
            household_id=household_id,
            location_code=values[0],
            members=tuple(members[household_id]),
            address=values[1],
            phone=values[2],
            latitude=values[3],
            longitude=values[4],
            status=values[5],
        )
        for household_id, values in fields.items()
    }


# --- flags ---------------------------------------------------------------------------------


def _involving(household_ids: Sequence[UUID]) -> Any:
    return or_(
        DuplicateFlag.household_id.in_(household_ids),
        DuplicateFlag.other_household_id.in_(household_ids),
    )


async def open_flags_of(
    session: AsyncSession, household_ids: Sequence[UUID], *, for_update: bool = False
) -> list[DuplicateFlag]:
    """The open flags naming one of these households, in id order (locked when asked)."""
    if not household_ids:
        return []
    statement = (
        select(DuplicateFlag)
        .where(DuplicateFlag.status == "open", _involving(household_ids))
        .order_by(DuplicateFlag.id)
    )
    if for_update:
        statement = statement.with_for_update()
    return list((await session.scalars(statement)).all())


async def households_with_open_flags(
    session: AsyncSession, household_ids: Sequence[UUID]
) -> set[UUID]:
    """Which of these households still have an open flag."""
    if not household_ids:
        return set()
    flags = await open_flags_of(session, household_ids)
    named = {flag.household_id for flag in flags} | {flag.other_household_id for flag in flags}
    return named & set(household_ids)


async def raise_flags(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[DuplicateFlag]:
    """Inserts flags; a pair whose flag was resolved is opened again, any other pair already
    flagged is left alone (a decision is remembered, an open flag stays as it is). Answers the
    flags raised, so that a pair flagged by two transactions at once is raised by one."""
    if not rows:
        return []
    statement = upsert(DuplicateFlag).values(list(rows))
    copied = (
        "status",
        "score",
        "weight",
        "reasons",
        "comparison",
        "location_code",
        "source",
        "flagged_at",
        "flagged_by",
    )
    reopened: dict[str, Any] = {name: statement.excluded[name] for name in copied}
    reopened |= {
        "decided_at": None,
        "decided_by": None,
        "note": None,
        "surviving_household_id": None,
        "version": DuplicateFlag.version + 1,
    }
    raising = statement.on_conflict_do_update(
        index_elements=[DuplicateFlag.household_id, DuplicateFlag.other_household_id],
        set_=reopened,
        where=DuplicateFlag.status == "resolved",
    ).returning(DuplicateFlag)
    result = await session.scalars(raising, execution_options={"populate_existing": True})
    return list(result.all())


async def get_flag(
    session: AsyncSession, flag_id: UUID, *, for_update: bool = False
) -> DuplicateFlag | None:
    statement = select(DuplicateFlag).where(DuplicateFlag.id == flag_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


async def flags_for_update(session: AsyncSession, flag_ids: Sequence[UUID]) -> list[DuplicateFlag]:
    """Several flags locked in id order (two reviewers' bulk decisions cannot deadlock)."""
    statement = (
        select(DuplicateFlag)
        .where(DuplicateFlag.id.in_(flag_ids))
        .order_by(DuplicateFlag.id)
        .with_for_update()
    )
    return list((await session.scalars(statement)).all())


@dataclass(frozen=True)
class FlagFilters:
    status: str | None = None
    location: str | None = None
    household_id: UUID | None = None
    min_score: float | None = None
    source: str | None = None
    flagged_since: datetime | None = None


async def list_flags(
    session: AsyncSession, filters: FlagFilters, limit: int, after: UUID | None
) -> list[DuplicateFlag]:
    """One page of flags in id (flagging) order, `limit` + 1 rows."""
    statement: Select[Any] = keyset(select(DuplicateFlag), DuplicateFlag.id, limit, after)
    if filters.status is not None:
        statement = statement.where(DuplicateFlag.status == filters.status)
    if filters.location is not None:
        statement = statement.where(within(DuplicateFlag.location_code, filters.location))
    if filters.household_id is not None:
        statement = statement.where(_involving([filters.household_id]))
    if filters.min_score is not None:
        statement = statement.where(DuplicateFlag.score >= filters.min_score)
    if filters.source is not None:
        statement = statement.where(DuplicateFlag.source == filters.source)
    if filters.flagged_since is not None:
        statement = statement.where(DuplicateFlag.flagged_at >= filters.flagged_since)
    return list((await session.scalars(statement)).all())


async def household_numbers(
    session: AsyncSession, household_ids: Sequence[UUID]
) -> dict[UUID, str]:
    if not household_ids:
        return {}
    rows = await session.execute(
        select(Household.id, Household.household_number).where(Household.id.in_(set(household_ids)))
    )
    return {household_id: number for household_id, number in rows.all()}


# --- the batch run -------------------------------------------------------------------------

BATCH_KEYS = (
    "CREATE TEMP TABLE dedupe_keys ON COMMIT PRESERVE ROWS AS "
    "SELECT m.household_id, CASE WHEN left(key, 1) = 'b' THEN key "
    # the area as `matching.block_area` cuts it: the first three segments of the location code
    "ELSE array_to_string((string_to_array(translate(h.location_code, '.', '-'), '-'))[1:3], "
    "'-') || '|' || key END AS key FROM members m "
    "JOIN households h ON h.id = m.household_id AND h.status <> 'exited' "
    "CROSS JOIN LATERAL unnest(m.match_keys) AS key "
    "UNION ALL SELECT id, 'p' || phone FROM households WHERE phone IS NOT NULL "
    "AND status <> 'exited' "
    "UNION ALL SELECT m.household_id, 'p' || m.phone FROM members m "
    "JOIN households h ON h.id = m.household_id AND h.status <> 'exited' "
    "WHERE m.phone IS NOT NULL"
)
BATCH_BLOCKS = (
    "CREATE TEMP TABLE dedupe_blocks ON COMMIT PRESERVE ROWS AS "
    "SELECT key, array_agg(DISTINCT household_id) AS households FROM dedupe_keys "
    "GROUP BY key HAVING count(DISTINCT household_id) > 1"
)
BATCH_PAIRS = (
    "CREATE TEMP TABLE dedupe_pairs ON COMMIT PRESERVE ROWS AS "
    "SELECT DISTINCT a.id AS a, b.id AS b FROM dedupe_blocks "
    "CROSS JOIN LATERAL unnest(households) AS a(id) "
    "CROSS JOIN LATERAL unnest(households) AS b(id) "
    "WHERE a.id < b.id AND cardinality(households) <= :max_block "
    "EXCEPT SELECT household_id, other_household_id FROM duplicate_flags "
    "WHERE status <> 'resolved'"
)


@dataclass(frozen=True)
class Blocking:
    pairs: int
    blocks: int
    blocks_skipped: int


async def build_candidate_pairs(session: AsyncSession, max_block: int) -> Blocking:
    """Every candidate pair of the registry into the session's temporary `dedupe_pairs`
    (a, b with a < b), set-based: the keys, the blocks of two or more households, and the
    pairs inside blocks of at most `max_block` households that no flag names yet (a resolved
    flag may be raised again). The session must keep its connection until the run ends."""
    for table in ("dedupe_pairs", "dedupe_blocks", "dedupe_keys"):
        await session.execute(text(f"DROP TABLE IF EXISTS {table}"))
    await session.execute(text(BATCH_KEYS))
    await session.execute(text(BATCH_BLOCKS))
    await session.execute(text(BATCH_PAIRS), {"max_block": max_block})
    await session.execute(text("CREATE INDEX ON dedupe_pairs (a, b)"))
    await session.execute(text("ANALYZE dedupe_pairs"))
    blocks, skipped = (
        await session.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE cardinality(households) > :max_block) "
                "FROM dedupe_blocks"
            ),
            {"max_block": max_block},
        )
    ).one()
    pairs = await session.scalar(text("SELECT count(*) FROM dedupe_pairs"))
    await session.execute(text("DROP TABLE dedupe_keys"))
    return Blocking(int(pairs or 0), int(blocks), int(skipped))


async def candidate_pairs_page(
    session: AsyncSession, after: tuple[UUID, UUID] | None, limit: int
) -> list[tuple[UUID, UUID]]:
    if after is None:
        rows = await session.execute(
            text("SELECT a, b FROM dedupe_pairs ORDER BY a, b LIMIT :limit"), {"limit": limit}
        )
    else:
        rows = await session.execute(
            text(
                "SELECT a, b FROM dedupe_pairs WHERE (a, b) > (:a, :b) ORDER BY a, b LIMIT :limit"
            ),
            {"a": after[0], "b": after[1], "limit": limit},
        )
    return [(a, b) for a, b in rows.all()]


async def drop_candidate_pairs(session: AsyncSession) -> None:
    await session.execute(text("DROP TABLE IF EXISTS dedupe_pairs"))
    await session.execute(text("DROP TABLE IF EXISTS dedupe_blocks"))


# --- runs ----------------------------------------------------------------------------------


async def unfinished_run(session: AsyncSession) -> DuplicateRun | None:
    statement = (
        select(DuplicateRun)
        .where(DuplicateRun.status.in_(("queued", "running")))
        .order_by(DuplicateRun.requested_at)
        .limit(1)
    )
    return (await session.scalars(statement)).first()


async def lock_runs(session: AsyncSession) -> None:
    """Serialises the requests that start a run (one unfinished run at a time)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('dedupe-run', 0))"))


async def claim_run(session: AsyncSession, stale_before: datetime) -> DuplicateRun | None:
    """The oldest queued run, or a running one whose worker stopped beating before
    `stale_before` (it died: the run starts again; flags already raised stay), locked."""
    statement = (
        select(DuplicateRun)
        .where(
            or_(
                DuplicateRun.status == "queued",
                (DuplicateRun.status == "running") & (DuplicateRun.heartbeat_at < stale_before),
            )
        )
        .order_by(DuplicateRun.requested_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(statement)).first()


async def get_run(session: AsyncSession, run_id: UUID) -> DuplicateRun | None:
    return await session.get(DuplicateRun, run_id, populate_existing=True)


async def list_runs(session: AsyncSession, limit: int, after: UUID | None) -> list[DuplicateRun]:
    statement = keyset(select(DuplicateRun), DuplicateRun.id, limit, after)
    return list((await session.scalars(statement)).all())


async def record_progress(session: AsyncSession, run_id: UUID, **values: Any) -> None:
    await session.execute(update(DuplicateRun).where(DuplicateRun.id == run_id).values(**values))


async def open_flag_count(session: AsyncSession) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(DuplicateFlag).where(DuplicateFlag.status == "open")
        )
        or 0
    )
