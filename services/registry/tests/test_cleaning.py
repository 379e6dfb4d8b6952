"""Cleaning at entry, on hand-computed cases: each rule's change, and each refusal's field."""

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from registry.cleaning import (
    AccountDraft,
    HouseholdDraft,
    IdentifierDraft,
    MemberDraft,
    clean_account,
    clean_attributes,
    clean_household,
    clean_identifier,
    clean_location,
    clean_name,
    clean_phone,
    clean_text,
    parse_hierarchy,
)
from registry.reference import (
    cleaning_rules,
    identifier_validators,
    load_attributes_schema,
    load_locations,
)
from registry.settings import REFERENCE, RegistrySettings

RULES = cleaning_rules(RegistrySettings(environment="test"))
TODAY = date(2026, 6, 15)


def test_names_are_nfc_and_whitespace_collapsed() -> None:
    decomposed = "Ame\u0301lie\u00a0 \u2003 Wanjiru  "  # e + combining acute, odd spaces

    cleaned = clean_name("given_name", decomposed)

    assert cleaned.value == "Amélie Wanjiru"
    assert cleaned.value is not None and len(cleaned.value) == 14  # é is one code point
    assert [(c.field, c.rule) for c in cleaned.report.changes] == [
        ("given_name", "normalised-text")
    ]


def test_a_clean_name_reports_no_change() -> None:
    cleaned = clean_name("given_name", "Amina")

    assert cleaned.value == "Amina"
    assert cleaned.report.changes == []


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("Ami\x00na", "control-character"),
        ("Ami\nna", "control-character"),
        ("   ", "empty"),
        ("x" * 101, "too-long"),
        ("Ami\ufffdna", "replacement-character"),
    ],
)
def test_bad_names_are_refused_naming_the_field(value: str, code: str) -> None:
    cleaned = clean_name("members.0.given_name", value)

    assert cleaned.value is None
    assert [(r.field, r.code) for r in cleaned.report.refusals] == [("members.0.given_name", code)]


def test_an_address_keeps_its_lines() -> None:
    cleaned = clean_text("address", "Plot 12,  Kibera\n\n  Nairobi ", multiline=True)

    assert cleaned.value == "Plot 12, Kibera\nNairobi"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("0712 345 678", "+254712345678"),
        ("+254-712-345678", "+254712345678"),
        ("254712345678", "+254712345678"),
        ("+27 82 123 4567", "+27821234567"),
    ],
)
def test_phones_are_parsed_to_e164_in_the_default_region(raw: str, e164: str) -> None:
    cleaned = clean_phone("phone", raw, "KE")

    assert cleaned.value == e164
    assert cleaned.report.changes[0].after == e164


@pytest.mark.parametrize("raw", ["0700 000", "12", "not a phone", "+999 1234567"])
def test_invalid_phones_are_refused(raw: str) -> None:
    cleaned = clean_phone("phone", raw, "KE")

    assert cleaned.value is None
    assert cleaned.report.refusals[0].code == "invalid-phone"


def test_identifiers_without_a_validator_are_compacted_and_upper_cased() -> None:
    cleaned = clean_identifier("id", "national_id", " 12 345-678 ", {})

    assert cleaned.value == "12345678"


def test_a_configured_stdnum_validator_checks_the_check_digit() -> None:
    validators = identifier_validators({"national_id": "za.idnr"})
    # 750330 5044 08 9: the Luhn check digit of the first twelve digits is 9.
    valid = clean_identifier("id", "national_id", "750330 5044 08 9", validators)
    wrong_digit = clean_identifier("id", "national_id", "7503305044088", validators)
    other_scheme = clean_identifier("id", "passport", "7503305044088", validators)

    assert valid.value == "7503305044089"
    assert wrong_digit.value is None
    assert wrong_digit.report.refusals[0].code == "invalid-identifier"
    assert "checksum" in wrong_digit.report.refusals[0].message.lower()
    assert other_scheme.value == "7503305044088"


def test_a_validator_outside_stdnum_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="python-stdnum"):
        identifier_validators({"national_id": "za.idnr; import os"})
    with pytest.raises(ModuleNotFoundError):
        identifier_validators({"national_id": "zz.nothing"})


def test_location_codes_are_checked_against_the_hierarchy() -> None:
    assert clean_location("location_code", " ke-047-0101 ", RULES.locations).value == "KE-047-0101"
    unknown = clean_location("location_code", "KE-047-9999", RULES.locations)
    assert unknown.value is None
    assert unknown.report.refusals[0].code == "unknown-location"


def test_the_sample_hierarchy_has_four_levels_nested_by_prefix() -> None:
    hierarchy = load_locations(REFERENCE / "locations_ke.csv")

    assert [len(hierarchy.codes_at_level(level)) for level in (1, 2, 3, 4)] == [6, 18, 54, 162]
    assert hierarchy.areas["KE-047-0101.01.001"].parent == "KE-047-0101.01"
    assert hierarchy.areas["KE-047-0101"].name == "Kibra"


@pytest.mark.parametrize(
    "rows",
    [
        [{"code": "KE-001", "name": "A", "level": "2", "parent_code": ""}],
        [
            {"code": "KE-001", "name": "A", "level": "1", "parent_code": ""},
            {"code": "KE-0011", "name": "B", "level": "2", "parent_code": "KE-001"},
        ],
        [{"code": "KE-001-01", "name": "B", "level": "2", "parent_code": "KE-001"}],
        [{"code": "KE-001", "name": "A", "level": "x", "parent_code": ""}],
        [],
    ],
    ids=[
        "level 2 without parent",
        "not nested at a separator",
        "parent missing",
        "bad level",
        "empty",
    ],
)
def test_a_broken_hierarchy_is_refused(rows: list[dict[str, str]]) -> None:
    with pytest.raises(ValueError):
        parse_hierarchy(rows)


def test_attributes_are_checked_against_the_json_schema() -> None:
    schema = load_attributes_schema(REFERENCE / "attributes.schema.json")

    good = clean_attributes(
        "eligibility_attributes", {"pmt_score": 27.5, "has_orphan": True}, schema
    )
    bad = clean_attributes(
        "eligibility_attributes",
        {"pmt_score": 130, "housing_type": "castle", "colour": "red"},
        schema,
    )

    assert good.value == {"pmt_score": 27.5, "has_orphan": True}
    assert sorted(r.field for r in bad.report.refusals) == [
        "eligibility_attributes",  # additionalProperties: colour
        "eligibility_attributes.housing_type",
        "eligibility_attributes.pmt_score",
    ]


def test_an_iban_is_checked_and_compacted_with_schwifty() -> None:
    good = clean_account("account", AccountDraft("iban", "de89 3704 0044 0532 0130 00"), "KE")
    bad = clean_account("account", AccountDraft("iban", "DE89 3704 0044 0532 0130 01"), "KE")

    assert good.value is not None and good.value.value == "DE89370400440532013000"
    assert bad.value is None and bad.report.refusals[0].field == "account.value"


def test_a_local_account_needs_a_bank_code_and_a_bic_is_checked() -> None:
    without_code = clean_account("account", AccountDraft("bank_account", "0123-4567-89"), "KE")
    with_code = clean_account(
        "account", AccountDraft("bank_account", "0123-4567-89", "01-094"), "KE"
    )
    bad_bic = clean_account("account", AccountDraft("bank_account", "0123456789", "KCBLXXNA"), "KE")

    assert [r.field for r in without_code.report.refusals] == ["account.bank_code"]
    assert with_code.value == AccountDraft("bank_account", "0123456789", "01094")
    assert bad_bic.report.refusals[0].code == "invalid-bic"


def test_a_mobile_money_account_is_an_e164_number() -> None:
    cleaned = clean_account("account", AccountDraft("msisdn", "0712 345678", None, " Amina "), "KE")

    assert cleaned.value == AccountDraft("msisdn", "+254712345678", None, "Amina")


def _member(**fields: object) -> MemberDraft:
    base = MemberDraft("Amina", "Otieno", "female", date(1984, 3, 2), "head")
    return replace(base, **fields)  # type: ignore[arg-type]


def _household(*members: MemberDraft) -> HouseholdDraft:
    return HouseholdDraft(location_code="KE-047-0101", members=members)


def test_the_head_is_the_primary_recipient_unless_another_member_is_named() -> None:
    child = _member(given_name="Baraka", relationship="child", date_of_birth=date(2015, 7, 19))

    by_default = clean_household(_household(_member(), child), RULES, TODAY)
    named = clean_household(
        _household(_member(), replace(child, is_primary_recipient=True)), RULES, TODAY
    )

    assert by_default.value is not None and named.value is not None
    assert [m.is_primary_recipient for m in by_default.value.members] == [True, False]
    assert [m.is_primary_recipient for m in named.value.members] == [False, True]


@pytest.mark.parametrize(
    ("members", "field", "code"),
    [
        ((_member(relationship="spouse"),), "members", "one-head"),
        ((_member(), _member(given_name="B")), "members", "one-head"),
        (
            (
                _member(is_primary_recipient=True),
                _member(relationship="spouse", is_primary_recipient=True),
            ),
            "members",
            "one-primary-recipient",
        ),
        (
            (_member(date_of_birth=date(2026, 6, 16)),),
            "members.0.date_of_birth",
            "birth-date-in-future",
        ),
        (
            (
                _member(identifiers=(IdentifierDraft("national_id", "1"),)),
                _member(relationship="spouse", identifiers=(IdentifierDraft("national_id", "1"),)),
            ),
            "members.1.identifiers.0.value",
            "repeated-identifier",
        ),
        ((_member(family_name="O\x07tieno"),), "members.0.family_name", "control-character"),
    ],
    ids=[
        "no head",
        "two heads",
        "two primary recipients",
        "born tomorrow",
        "identifier twice",
        "control character",
    ],
)
def test_a_household_breaking_a_rule_is_refused_naming_the_field(
    members: tuple[MemberDraft, ...], field: str, code: str
) -> None:
    cleaned = clean_household(_household(*members), RULES, TODAY)

    assert cleaned.value is None
    assert (field, code) in [(r.field, r.code) for r in cleaned.report.refusals]


def test_the_report_lists_every_change_of_a_household() -> None:
    draft = HouseholdDraft(
        location_code="ke-047-0101",
        phone="0712345678",
        members=(
            _member(given_name=" Amina ", identifiers=(IdentifierDraft("national_id", "12 34"),)),
        ),
    )

    cleaned = clean_household(draft, RULES, TODAY)

    assert [(c.field, c.after) for c in cleaned.report.changes] == [
        ("location_code", "KE-047-0101"),
        ("phone", "+254712345678"),
        ("members.0.given_name", "Amina"),
        ("members.0.identifiers.0.value", "1234"),
    ]
    assert cleaned.report.as_json()["refusals"] == []


def test_settings_point_to_other_reference_files(tmp_path: Path) -> None:
    locations = tmp_path / "areas.csv"
    locations.write_text("code,name,level,parent_code\nUG-01,Kampala,1,\n", encoding="utf-8")

    rules = cleaning_rules(
        RegistrySettings(environment="test", locations_csv=locations, default_phone_region="UG")
    )

    assert "UG-01" in rules.locations and "KE-047" not in rules.locations
    assert rules.phone_region == "UG"
