"""The compiled SQL agrees with the pure rules on every household of a varied projection, and
never formats a value into the statement."""

import random
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql

from amana_common.db import Database
from payroll import repository
from payroll.domain import (
    Household,
    Member,
    ProgrammeRules,
    amount_sql,
    evaluate,
    parse_programme_rules,
    rule_sql,
)

from .conftest import ATTRIBUTES
from .factories import apply, household

LOCATIONS = ["KE-047-0101", "KE-047-0102", "KE-047.9", "KE-0470", "KE-001-0001", "UG-01"]
TREES: list[dict[str, Any]] = [
    {
        "all": [
            {"field": "location", "op": "within", "value": ["KE-047", "UG"]},
            {"field": "members", "where": {"age_band": ["0-4", "5-17"]}, "op": ">=", "value": 2},
        ]
    },
    {
        "any": [
            {"field": "attributes.pmt_score", "op": "<", "value": 35.1},
            {"not": {"field": "attributes.housing", "op": "in", "value": ["brick", "stone"]}},
            {"field": "members", "where": {"min_age": 60, "sex": "female"}, "op": ">=", "value": 1},
        ]
    },
    {
        "all": [
            {"not": {"field": "attributes.orphan", "op": "=", "value": True}},
            {"field": "household_size", "op": "in", "value": [2, 3, 4]},
            {"field": "status", "op": "!=", "value": "exited"},
            {"field": "attributes.pmt_score", "op": "present", "value": True},
            {
                "field": "members",
                "where": {"disability": True, "max_age": 17},
                "op": "=",
                "value": 0,
            },
        ]
    },
    {"field": "location", "op": "not_in", "value": ["KE-047-0101", "UG-01"]},
]
FORMULA = {
    "base_amount_minor": 1_000,
    "top_ups": [
        {"where": {"age_band": "0-4"}, "amount_minor": 700, "max_count": 2},
        {"where": {"sex": ["female", "other"], "min_age": 18}, "amount_minor": 300, "max_count": 1},
        {"where": {"disability": True}, "amount_minor": 900, "max_count": 3},
    ],
    "cap_minor": 3_500,
}


def random_household(rng: random.Random, number: int, on: date) -> tuple[Any, Household]:
    members = [
        (
            on - timedelta(days=rng.randrange(0, 90 * 365)),
            rng.choice(["female", "male", "other", "unknown"]),
            rng.random() < 0.2,
        )
        for _ in range(rng.randint(1, 8))
    ]
    members.append((born_exactly(on, rng.choice([5, 18, 60])), "female", False))  # on a boundary
    attributes: dict[str, Any] = {}
    score = rng.choice([None, 35.1, 35.0, 12, 80.25, "n/a"])  # "n/a": a value of another type
    if score is not None:
        attributes["pmt_score"] = score
    if rng.random() < 0.7:
        attributes["housing"] = rng.choice(["brick", "stone", "mud"])
    if rng.random() < 0.5:
        attributes["orphan"] = rng.random() < 0.5
    status = rng.choice(["active", "active", "under_review", "suspended", "exited"])
    snapshot = household(
        f"H{number:09d}", rng.choice(LOCATIONS), members, status=status, attributes=attributes
    )
    pure = Household(
        snapshot.household_number,
        snapshot.location_code,
        snapshot.status,
        tuple(Member(m.date_of_birth, m.sex, m.disability) for m in snapshot.members),
        attributes,
        snapshot.size,
    )
    return snapshot, pure


def born_exactly(on: date, years: int) -> date:
    return on.replace(year=on.year - years)


async def test_sql_and_python_agree_on_eligibility_and_amounts(database: Database) -> None:
    rng = random.Random(20260701)
    on = date(2026, 7, 1)
    generated = [random_household(rng, n, on) for n in range(400)]
    async with database.sessionmaker() as session, session.begin():
        await apply(session, *(snapshot for snapshot, _ in generated))
        for tree in TREES:
            rules = parse_programme_rules(tree, FORMULA, [], ATTRIBUTES)
            in_sql = await _evaluate_in_sql(session, rules, on)
            in_python = {
                pure.household_number: (
                    evaluate(rules.eligibility, pure, on),
                    rules.formula.amount(pure, on),
                )
                for _, pure in generated
            }
            assert in_sql == in_python, tree
            held = sum(1 for eligible, _ in in_python.values() if eligible)
            assert 0 < held < len(generated), f"{tree} should split the households"


async def _evaluate_in_sql(
    session: Any, rules: ProgrammeRules, on: date
) -> dict[str, tuple[bool, int]]:
    h = repository.households
    counts = repository.member_counts(h, rules.member_filters(), on)
    statement = select(
        h.c.household_number,
        rule_sql(rules.eligibility, repository.household_columns(h), counts),
        amount_sql(rules.formula, counts),
    )
    rows = await session.execute(statement)
    return {number: (bool(eligible), int(amount)) for number, eligible, amount in rows}


def test_values_are_bound_parameters_never_sql_text() -> None:
    hostile = "x'); DROP TABLE households; --"
    rules = parse_programme_rules(
        {"field": "attributes.housing", "op": "=", "value": hostile},
        {"base_amount_minor": 1},
        [],
        ATTRIBUTES,
    )
    h = repository.households
    compiled = (
        select(rule_sql(rules.eligibility, repository.household_columns(h), {}))
        .select_from(h)
        .compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    )

    assert hostile not in str(compiled)
    assert "housing" not in str(compiled)  # the attribute's name is a parameter too
    assert hostile in compiled.params.values()
