"""The synthetic population: reproducible, valid at the door, near-duplicates with their truth,
the CSV shape, and the set-based load."""

import csv
import io
import json
from collections import Counter
from datetime import date
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from amana_common.db import Database
from amana_common.testing.databases import outbox_events
from amana_common.testing.databases import row_count as count
from amana_contracts.registry import HouseholdUpdatedV1
from registry import service
from registry.cleaning import AccountDraft, clean_account, clean_household
from registry.generate import (
    GeneratedHousehold,
    Generator,
    GeneratorConfig,
    ProviderOption,
    csv_columns,
    load,
    transliterate,
    typo,
    write_csv,
    write_ndjson,
    write_truth,
)
from registry.models import (
    Household,
    HouseholdChange,
    Member,
    MemberIdentifier,
    PaymentPreference,
)
from registry.reference import cleaning_rules
from registry.schemas import HouseholdIn
from registry.settings import RegistrySettings

RULES = cleaning_rules(RegistrySettings(environment="test"))
MOBILE = ProviderOption(UUID(int=1), "mobile_money", service_areas=("KE-047",))
CASH = ProviderOption(UUID(int=2), "cash_pay_point", pay_point_ids=(UUID(int=20), UUID(int=21)))


def generate(**changes: object) -> list[GeneratedHousehold]:
    config = GeneratorConfig(**{"households": 300, "seed": 7, **changes})  # type: ignore[arg-type]
    return list(Generator(config, RULES.locations).households())


def ndjson(households: list[GeneratedHousehold]) -> str:
    out = io.StringIO()
    write_ndjson(households, out)
    return out.getvalue()


def test_the_same_seed_gives_the_same_population_and_another_seed_another() -> None:
    assert ndjson(generate()) == ndjson(generate())
    assert ndjson(generate()) != ndjson(generate(seed=8))


def test_every_generated_household_is_accepted_by_the_cleaning_unchanged_in_substance() -> None:
    for household in generate(households=1000, providers=(MOBILE, CASH)):
        draft = HouseholdIn.model_validate(household.body).draft()
        cleaned = clean_household(draft, RULES, date(2026, 6, 1))
        assert cleaned.report.refusals == [], household.code
        assert [c.rule for c in cleaned.report.changes] == [], household.code


def test_compositions_look_like_a_population() -> None:
    households = generate(households=3000)
    members = [m for h in households for m in h.body["members"]]
    sizes = Counter(len(h.body["members"]) for h in households)
    relationships = Counter(m["relationship"] for m in members)

    assert 3.5 < len(members) / len(households) < 5.0
    assert set(sizes) <= set(range(1, 11)) and sizes[1] > 0 and sizes[10] > 0
    assert relationships["head"] == len(households)
    assert relationships["child"] > relationships["spouse"] > relationships["parent"] > 0
    assert 0.03 < sum(m["disability"] for m in members) / len(members) < 0.07
    assert 0.35 < sum(m["sex"] == "female" for m in members) / len(members) < 0.65
    locations = {h.body["location_code"] for h in households}
    assert locations <= set(RULES.locations.leaves()) and len(locations) > 100


def test_near_duplicates_come_at_the_rate_asked_with_their_truth() -> None:
    households = generate(households=4000, duplicate_rate=0.1)
    by_code = {h.code: h for h in households}
    duplicates = [h for h in households if h.duplicate_of is not None]

    assert 0.08 < len(duplicates) / len(households) < 0.12
    variations = Counter(v for h in duplicates for v in h.variations)
    assert set(variations) == {
        "typo",
        "swapped_names",
        "transliteration",
        "birth_date",
        "same_identifier",
    }
    for duplicate in duplicates:
        original = by_code[duplicate.duplicate_of]  # type: ignore[index]
        assert original.duplicate_of is None and original.code < duplicate.code
        head, first = duplicate.body["members"][0], original.body["members"][0]
        same_id = head["identifiers"] == first["identifiers"]
        assert same_id == ("same_identifier" in duplicate.variations)
        if duplicate.variations == ("birth_date",):
            days = abs(
                (
                    date.fromisoformat(head["date_of_birth"])
                    - date.fromisoformat(first["date_of_birth"])
                ).days
            )
            assert days == 1 or 27 <= days <= 31
            assert head["given_name"] == first["given_name"]
    truth = list(csv.DictReader(io.StringIO(_written(write_truth, households))))
    assert [(t["household_code"], t["duplicate_of"]) for t in truth] == [
        (d.code, d.duplicate_of) for d in duplicates
    ]


def test_typos_and_transliterations_are_near_the_original() -> None:
    import random

    rng = random.Random(1)
    assert transliterate("Mohamed") == "Mohammed"
    assert transliterate("Philip") == "Filip"
    assert transliterate("Wanjiru") == "Wánjiru"
    for name in ("Otieno", "Wanjiku", "Kiprono"):
        changed = typo(name, rng)
        assert changed != name and abs(len(changed) - len(name)) <= 1


def test_payment_preferences_follow_the_options_and_their_areas() -> None:
    households = generate(households=400, providers=(MOBILE, CASH))

    for household in households:
        preference = household.body["payment_preference"]
        if preference["mechanism"] == "mobile_money":
            assert household.body["location_code"].startswith("KE-047-")
            cleaned = clean_account("account", AccountDraft(**preference["account"]), "KE")
            assert cleaned.report.refusals == []
        else:
            assert UUID(preference["pay_point_id"]) in CASH.pay_point_ids


def _written(writer: object, households: list[GeneratedHousehold]) -> str:
    out = io.StringIO()
    writer(households, out)  # type: ignore[operator]
    return out.getvalue()


def test_the_csv_has_one_row_per_member_grouped_by_household() -> None:
    households = generate(households=50, providers=(CASH,))

    rows = list(csv.DictReader(io.StringIO(_written(write_csv, households))))

    assert list(rows[0]) == csv_columns()
    assert len(rows) == sum(len(h.body["members"]) for h in households)
    codes = [row["household_code"] for row in rows]
    assert codes == sorted(codes)
    first = households[0].body
    head_row, other_rows = rows[0], rows[1 : len(first["members"])]
    assert head_row["location_code"] == first["location_code"]
    assert head_row["attr.pmt_score"] == str(first["eligibility_attributes"]["pmt_score"])
    assert head_row["payment_mechanism"] == "cash_pay_point"
    assert head_row["national_id"] == first["members"][0]["identifiers"][0]["value"]
    assert all(row["location_code"] == "" for row in other_rows)


async def test_generated_bodies_enrol_through_the_api(client: httpx.AsyncClient) -> None:
    originals = [h for h in generate(households=40) if h.duplicate_of is None][:25]

    for household in originals:
        response = await client.post("/households", json=household.body)
        assert response.status_code == 201, response.text


async def test_the_fast_path_copies_households_set_based(database: Database) -> None:
    households = generate(households=500, duplicate_rate=0.2, providers=(CASH,))
    members = sum(len(h.body["members"]) for h in households)
    repeated = sum(1 for h in households if "same_identifier" in h.variations)

    loaded = await load(database, households, batch_size=200)

    assert loaded == 500
    assert await count(database, Household.__table__) == 500
    assert await count(database, Member.__table__) == members
    assert await count(database, PaymentPreference.__table__) == 500
    identifiers = sum(len(m["identifiers"]) for h in households for m in h.body["members"])
    assert await count(database, MemberIdentifier.__table__) == identifiers - repeated
    async with database.sessionmaker() as session:
        heads = await session.scalar(select(func.count()).where(Member.is_primary_recipient))
        folded = await session.scalar(
            select(Member.search_name)
            .where(Member.given_name == households[0].body["members"][0]["given_name"])
            .limit(1)
        )
    assert heads == 500
    assert folded is not None and folded == folded.lower()


@pytest.mark.parametrize("locale", ["sw", "en_NG"])
def test_other_locales_give_their_names(locale: str) -> None:
    names = {
        m["family_name"] for h in generate(households=50, locale=locale) for m in h.body["members"]
    }
    kenyan = {m["family_name"] for h in generate(households=50) for m in h.body["members"]}

    assert len(names) > 10 and names != kenyan
    assert json.dumps(sorted(names))  # plain strings


async def test_a_provider_change_republishes_the_households_paying_through_it(
    database: Database,
) -> None:
    households = generate(households=30, duplicate_rate=0, providers=(CASH,))
    households += generate(households=5, seed=9, duplicate_rate=0, providers=(MOBILE,))
    await load(database, households, batch_size=100)
    async with database.sessionmaker() as session:
        cash_households = await session.scalar(
            select(func.count()).where(PaymentPreference.provider_id == CASH.provider_id)
        )

        published = await service.republish_for_provider(session, CASH.provider_id, batch_size=7)
        await session.commit()

    assert published == cash_households and published > 7
    events = [HouseholdUpdatedV1.model_validate(e.data) for e in await outbox_events(database)]
    assert len(events) == published
    assert {e.version for e in events} == {2}
    assert all(
        e.payment_preference and e.payment_preference.provider_id == CASH.provider_id
        for e in events
    )
    assert all(not e.payable and "provider_unknown" in e.not_payable_reasons for e in events)
    assert await count(database, HouseholdChange.__table__) == published
