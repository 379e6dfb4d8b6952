"""The duplicate detection's pure rules, on hand-computed cases: comparison levels, weights
(bits), scores, reasons, decisions and merging."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

import pytest

from registry.cleaning import HouseholdDraft, IdentifierDraft, MemberDraft
from registry.domain import RuleBroken
from registry.matching import (
    DecisionRequest,
    HouseholdRecord,
    Person,
    block_area,
    check_decidable,
    compare_dates,
    compare_households,
    compare_locations,
    compare_names,
    compare_people,
    fold,
    match_members,
    merge,
    outcome,
    person,
    score_of,
)


def uid(n: int) -> UUID:
    return UUID(int=n)


def someone(
    n: int,
    given: str = "Wanjiru",
    family: str = "Kamau",
    born: date = date(1979, 4, 11),
    sex: str = "female",
    relationship: str = "head",
    identifiers: tuple[tuple[str, str], ...] = (),
) -> Person:
    return person(uid(n), given, family, born, sex, relationship, identifiers)


def home(
    n: int, *members: Person, location: str = "KE-047-0101", **fields: object
) -> HouseholdRecord:
    return HouseholdRecord(uid(n), location, members, **fields)  # type: ignore[arg-type]


def test_folding_drops_case_accents_and_extra_spaces() -> None:
    assert fold("  Mbógò   NJERI ") == "mbogo njeri"


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        (date(1980, 5, 1), date(1980, 5, 1), "exact"),
        (date(1980, 5, 1), date(1980, 4, 30), "near"),  # a day apart, across a month
        (date(1980, 5, 1), date(1980, 6, 1), "near"),  # the same day a month later
        (date(1980, 12, 9), date(1981, 1, 9), "near"),  # ... across a year
        (date(1980, 5, 1), date(1981, 5, 1), "near"),  # the same day a year later
        (date(1980, 3, 4), date(1980, 4, 3), "near"),  # day and month swapped
        (date(1980, 5, 1), date(1980, 9, 20), "same_year"),
        (date(1980, 5, 1), date(1982, 5, 2), "different"),
    ],
)
def test_dates_of_birth_compare_by_level(a: date, b: date, level: str) -> None:
    assert compare_dates(a, b) == level


@pytest.mark.parametrize(
    ("given", "family", "level"),
    [
        ("Wanjiru", "Kamau", "exact"),
        ("WANJIRÚ", "kamau", "exact"),  # folded
        ("Kamau", "Wanjiru", "swapped"),
        ("Wanjiku", "Kamau", "close"),  # Jaro-Winkler 0.92, Metaphone WNJK and WNJR
        ("Wanjiru", "Kammau", "phonetic"),  # Metaphone KM for both
        ("Achieng", "Kamau", "one_part"),
        ("Achieng", "Odhiambo", "different"),
    ],
)
def test_names_compare_by_level(given: str, family: str, level: str) -> None:
    assert compare_names(someone(1), someone(2, given, family)) == level


def test_a_person_weighs_the_sum_of_its_comparisons() -> None:
    a = someone(1, identifiers=(("national_id", "30010001"),))
    b = someone(2, given="Wanjiku", identifiers=(("national_id", "30010002"),))

    compared = compare_people(a, b)

    # name close 5 + birth date exact 9 + sex same 1 + identifier different -2
    assert compared.weight == 13
    assert compared.reason() == (
        "head/head: name close, birth date exact, sex same, identifier different"
    )


def test_members_match_one_to_one_best_first() -> None:
    twin_a = someone(1, given="Baraka", born=date(2010, 1, 1), sex="male")
    twin_b = someone(2, given="Barak", born=date(2010, 1, 1), sex="male")
    other = someone(3, given="Baraka", born=date(2010, 1, 1), sex="male")

    [pair] = match_members([twin_a, twin_b], [other])

    assert (pair.member_id, pair.other_member_id, pair.weight) == (uid(1), uid(3), 20)


def test_one_member_with_a_birth_date_a_day_off_nearby_scores_two_thirds() -> None:
    a = home(10, someone(1), location="KE-047-0101.01")
    b = home(11, someone(2, born=date(1979, 4, 12)), location="KE-047-0101.02")

    compared = compare_households(a, b)

    # name exact 10 + birth date near 4 + sex same 1 = 15; location same parent +1 -> 16;
    # score = 1 / (1 + 2 ** -(16 - 15)) = 2/3
    assert compared.weight == 16
    assert compared.score == pytest.approx(2 / 3)
    assert compared.flagged
    assert compared.reasons() == [
        "head/head: name exact, birth date near, sex same",
        "location same_parent",
    ]


def test_the_same_person_far_away_in_a_larger_household_is_not_flagged() -> None:
    a = home(10, someone(1), someone(3, given="Njeri", born=date(2009, 10, 2)), location="KE-001")
    b = home(11, someone(2), someone(4, given="Otieno", born=date(1950, 1, 1)), location="KE-047")

    compared = compare_households(a, b)

    # head 10 + 9 + 1 = 20; one member of the smaller household unmatched -3; regions differ -3
    assert compared.weight == 14
    assert compared.score == pytest.approx(1 / 3)
    assert not compared.flagged and compared.unmatched == 1


def test_household_phone_address_and_gps_add_their_weights() -> None:
    fields: dict[str, Any] = {
        "address": "Plot 44",
        "phone": "+254711000044",
        "latitude": 0.5,
        "longitude": 36.0,
    }
    a = home(10, someone(1), **fields)
    b = home(11, someone(2, given="Achieng", family="Odhiambo"), **fields | {"latitude": 0.5005})

    compared = compare_households(a, b)

    # nobody matches: -3; same area +3; address +4, phone +6, GPS 56 m apart +4
    assert compared.weight == 14
    assert (compared.address, compared.phone, compared.gps) == (True, True, True)


def test_an_identifier_clash_is_always_flagged() -> None:
    a = home(10, someone(1), location="KE-001")
    b = home(11, someone(2, given="Achieng", family="Odhiambo"), location="KE-047")

    compared = compare_households(a, b, ["national_id"])

    assert compared.flagged and compared.reasons()[0] == "identifier clash: national_id"


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("KE-047-0101", "KE-047-0101", "same"),
        ("KE-047-0101.01", "KE-047-0101.02", "same_parent"),
        ("KE-047-0101", "KE-047-0102", "same_parent"),
        ("KE-047-0101.01", "KE-047-0102.01", "same_region"),
        ("KE-047", "KE-001", "different"),
        ("KE-047-0101", "KE-001-0101", "different"),
    ],
)
def test_locations_compare_by_their_common_ancestor(a: str, b: str, level: str) -> None:
    assert compare_locations(a, b) == level


@pytest.mark.parametrize(
    ("code", "area"),
    [
        ("KE-047-0101.01.001", "KE-047-0101"),
        ("KE-047-0101", "KE-047-0101"),
        ("KE-047", "KE-047"),
    ],
)
def test_blocking_keys_are_scoped_to_the_first_three_segments_of_the_location(
    code: str, area: str
) -> None:
    assert block_area(code) == area


def test_scores_are_the_logistic_of_the_weight_in_bits() -> None:
    assert score_of(15) == 0.5
    assert score_of(18) == pytest.approx(8 / 9)
    assert score_of(-200) == 0.0


def test_only_an_open_flag_can_be_decided() -> None:
    check_decidable("open", None)
    with pytest.raises(RuleBroken) as refused:
        check_decidable("not_duplicate", "registrar-7")
    assert refused.value.status == 409 and "registrar-7" in refused.value.message


def test_a_duplicate_decision_names_the_survivor_and_the_one_leaving() -> None:
    request = DecisionRequest("duplicate", "merge", uid(11))
    assert outcome(request, uid(10), uid(11)) == ("duplicate_merged", uid(11), uid(10))
    default = DecisionRequest("duplicate", "exit", None)
    assert outcome(default, uid(10), uid(11)) == ("duplicate_exited", uid(10), uid(11))
    assert outcome(DecisionRequest("not_duplicate", None, None), uid(10), uid(11)) == (
        "not_duplicate",
        None,
        None,
    )
    with pytest.raises(RuleBroken):
        outcome(DecisionRequest("duplicate", None, None), uid(10), uid(11))


def member(given: str, relationship: str = "child", *ids: tuple[str, str]) -> MemberDraft:
    return MemberDraft(
        given,
        "Kamau",
        "female",
        date(2010, 1, 1),
        relationship,
        is_primary_recipient=relationship == "head",
        identifiers=tuple(IdentifierDraft(scheme, value) for scheme, value in ids),
    )


def test_merging_keeps_the_survivor_adds_identifiers_and_the_unmatched_members() -> None:
    survivor = HouseholdDraft(
        "KE-047-0101",
        (member("Wanjiru", "head", ("national_id", "1")), member("Njeri")),
        phone=None,
    )
    other = HouseholdDraft(
        "KE-047-0101",
        (
            member("Wanjiku", "head", ("national_id", "2"), ("voter_id", "V9")),
            member("Muthoni", "head"),
        ),
        phone="+254711000044",
        address="Plot 44",
        eligibility_attributes={"pmt_score": 20, "displaced": True},
    )

    plan = merge(
        survivor,
        [uid(1), uid(2)],
        other,
        [uid(3), uid(4)],
        matched=[(uid(1), uid(3))],
        max_members=10,
    )

    assert [(m.given_name, m.relationship) for m in plan.draft.members] == [
        ("Wanjiru", "head"),
        ("Njeri", "child"),
        ("Muthoni", "other_relative"),  # the other's unmatched head holds no role here
    ]
    assert plan.draft.members[0].identifiers == (
        IdentifierDraft("national_id", "1"),
        IdentifierDraft("voter_id", "V9"),
    )
    assert (plan.members_added, plan.identifiers_added) == (1, 1)
    assert (plan.draft.phone, plan.draft.address) == ("+254711000044", "Plot 44")
    assert plan.draft.eligibility_attributes == {"pmt_score": 20, "displaced": True}
    assert not plan.draft.members[2].is_primary_recipient


def test_a_merge_over_the_member_limit_is_refused() -> None:
    survivor = HouseholdDraft("KE-047-0101", (member("Wanjiru", "head"),))
    other = HouseholdDraft("KE-047-0101", (member("Achieng", "head"), member("Njeri")))

    with pytest.raises(RuleBroken) as refused:
        merge(survivor, [uid(1)], other, [uid(2), uid(3)], [], max_members=2)

    assert refused.value.code == "merge-too-large"
