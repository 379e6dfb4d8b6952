"""The same batch duplicate detection done with splink (DuckDB backend), to compare with the
registry's own (bench/registry_dedupe.py): run it after that benchmark, on the database it
loaded. Not part of `make bench`: splink is not a dependency of the registry (its own
blocking meets the bars; see the README's "Duplicate detection"), so it runs from an
environment that has it:

    uv venv /tmp/splink && VIRTUAL_ENV=/tmp/splink uv pip install splink
    export PYTHONPATH=/tmp/splink/lib/python3.11/site-packages
    uv run python bench/registry_dedupe_splink.py

Members (folded names, date of birth, sex, the household's location, address and phone) are
read from PostgreSQL into DuckDB; splink's model (Fellegi-Sunter, u estimated by random
sampling, m by expectation maximisation) links members within blocks like the registry's
(date of birth with a name, both names with the year of birth, names crossed); two households
are flagged when at least half the members of the smaller one link to members of the other.
Time is measured from the read to the household pairs; precision and recall against the
generator's truth, as in bench/registry_dedupe.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry_dedupe import (
    clusters,
    population,
    precision_recall,
    server_url,
    split,
    truth_pairs,
)

MEMBER_LINK = 0.9
MEMBERS = """
SELECT m.id::text AS unique_id, m.household_id::text AS household_id, h.household_number,
       registry_fold(m.given_name) AS given, registry_fold(m.family_name) AS family,
       m.date_of_birth AS dob, to_char(m.date_of_birth, 'YYYY') AS birth_year, m.sex,
       h.location_code, registry_fold(coalesce(h.address, '')) AS address,
       coalesce(m.phone, h.phone) AS phone
FROM members m JOIN households h ON h.id = m.household_id
"""


async def read_members() -> list[dict[str, Any]]:
    url = server_url().rsplit("/", 1)[0] + "/amana_registry_dedupe"
    connection = await asyncpg.connect(url)
    try:
        return [dict(row) for row in await connection.fetch(MEMBERS)]
    finally:
        await connection.close()


def link(members: list[dict[str, Any]]) -> Any:
    import pandas as pd
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    frame = pd.DataFrame(members)
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("given"),
            cl.NameComparison("family"),
            cl.DateOfBirthComparison("dob", input_is_string=False),
            cl.ExactMatch("sex"),
            cl.ExactMatch("location_code"),
            cl.ExactMatch("address"),
            cl.ExactMatch("phone"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("dob", "given"),
            block_on("dob", "family"),
            block_on("given", "family", "birth_year"),
            "l.given = r.family AND l.family = r.given",
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(frame, settings, db_api=DuckDBAPI())
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("given", "family"))
    return linker.inference.predict(threshold_match_probability=MEMBER_LINK).as_pandas_dataframe()


def households_flagged(members: list[dict[str, Any]], links: Any) -> set[frozenset[str]]:
    household_of = {m["unique_id"]: m["household_id"] for m in members}
    size: dict[str, int] = defaultdict(int)
    for member in members:
        size[member["household_id"]] += 1
    linked: dict[frozenset[str], set[str]] = defaultdict(set)
    for left, right in zip(links["unique_id_l"], links["unique_id_r"], strict=True):
        a, b = household_of[left], household_of[right]
        if a != b:
            linked[frozenset((a, b))].add(left)
    return {
        pair
        for pair, left_members in linked.items()
        if 2 * len(left_members) >= min(size[h] for h in pair)
    }


def main() -> int:
    households = population(1_000_000)
    registry, _ = split(households, 1_000_000)
    cluster_of = clusters(households)
    started = time.monotonic()
    members = asyncio.run(read_members())
    read_s = time.monotonic() - started
    links = link(members)
    flagged_ids = households_flagged(members, links)
    seconds = time.monotonic() - started
    numbers = sorted({m["household_number"] for m in members})
    code_of_number = {
        number: household.code for number, household in zip(numbers, registry, strict=True)
    }
    number_of = {m["household_id"]: m["household_number"] for m in members}
    flagged = {frozenset(code_of_number[number_of[h]] for h in pair) for pair in flagged_ids}
    truth = truth_pairs([h.code for h in registry], cluster_of)
    precision, recall, hits, misses = precision_recall(flagged, truth)
    print(
        f"splink (DuckDB) batch over {len(members):,} members: {seconds:.1f} s "
        f"({read_s:.1f} s reading them); precision {precision:.3f}, recall {recall:.3f} "
        f"({hits:,} true pairs flagged, {misses:,} false, {len(truth):,} true pairs); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
