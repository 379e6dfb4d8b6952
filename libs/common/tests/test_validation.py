from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from amana_common.validation import (
    ISO_4217,
    CountryCode,
    CurrencyCode,
    Date,
    Email,
    LocationCode,
    Name,
    Omittable,
    RequestBody,
    Text,
    Timestamp,
    UniqueList,
)


class Example(BaseModel):
    currencies: UniqueList[CurrencyCode] = []
    country: CountryCode = "KE"
    location: LocationCode = "KE"
    note: Omittable[str] = None


def test_iso_4217_holds_circulating_currencies_only() -> None:
    assert {"KES", "UGX", "XOF", "USD", "EUR", "ZWG", "SLE"} <= ISO_4217
    assert not {"XXX", "XTS", "XAU", "USN", "CLF", "ZWL", "HRK"} & ISO_4217
    assert all(len(code) == 3 and code.isupper() for code in ISO_4217)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"currencies": ["KES", "ABC"]}, "currencies.1"),
        ({"currencies": ["KES", "KES"]}, "currencies"),
        ({"country": "KEN"}, "country"),
        ({"location": "ke-047"}, "location"),
        ({"note": None}, "note"),
    ],
)
def test_bad_values_name_their_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Example.model_validate(values)
    assert [".".join(map(str, e["loc"])) for e in refused.value.errors()] == [field]


def test_omittable_may_be_left_out() -> None:
    assert Example.model_validate({}).note is None


class Texts(BaseModel):
    name: Name = "Amina"
    address: Annotated[str, Text(max_length=100, multiline=True)] = "Plot 12"


@pytest.mark.parametrize(
    "value",
    [
        *("Amina\x00", "\tAmina", "Amina\n", "Ami\rna", "Amina\x7f", "Amina\x85"),
        *("Amina\u2028", "Amina\u2029", "Amina\ud800", "\udfffAmina", "Amina\x9f", "Amina\x1f"),
    ],
    ids=repr,
)
def test_single_line_text_refuses_controls_separators_and_lone_surrogates(value: str) -> None:
    """At either end too: the check runs before trimming, so nothing is silently dropped."""
    with pytest.raises(ValidationError) as refused:
        Texts.model_validate({"name": value})
    [error] = refused.value.errors()
    assert error["loc"] == ("name",)
    assert "Amina" not in error["msg"], "the message names the character, never the value"


def test_text_is_trimmed_and_keeps_what_is_printable() -> None:
    text = Texts.model_validate(
        {"name": "  Wanjirũ Ng\u2019ang\u2019a 😀 ", "address": "Plot 12\nKibera"}
    )
    assert text.name == "Wanjirũ Ng\u2019ang\u2019a 😀"
    assert text.address == "Plot 12\nKibera"


@pytest.mark.parametrize("value", ["Plot 12\r\nKibera", "Plot 12\tKibera", "Plot\u2028Kibera"])
def test_multi_line_text_allows_line_feeds_only(value: str) -> None:
    with pytest.raises(ValidationError):
        Texts.model_validate({"address": value})


def test_the_rule_is_documented_in_the_json_schema() -> None:
    properties = Texts.model_json_schema()["properties"]
    assert "[^\\u0000-\\u001f" in properties["name"]["pattern"]
    assert "\\u000b" in properties["address"]["pattern"]  # LF (000a) is allowed
    assert Example.model_json_schema()["properties"]["country"]["pattern"] == "^[A-Z]{2}$"


class Documented(BaseModel):
    name: Name
    email: Email
    reason: Annotated[str, Text(min_length=3, max_length=12, multiline=True)]
    location: LocationCode


TRICKY_TEXTS = [
    *("Amina", " Amina ", "A", " A", "ab", " ab ", "abc", " dé", "  \u3000", "\u00a0x\u00a0"),
    *("a\u2003b", "a\nb", "\nabc\n", "Ami\u0085na", "x" * 12, " " + "x" * 12, "\ufeffab"),
    *("KE-047", " KE-047", "ke", "KE\u00a0", "", " "),
    *("a@b.ke", " a@b.ke", "a\x01@b.ke", "a@b\u2028.ke", "x" * 250 + "@b.ke"),
]


@pytest.mark.parametrize("value", TRICKY_TEXTS, ids=repr)
@pytest.mark.parametrize("field", ["name", "reason", "location", "email"])
def test_the_json_schema_accepts_exactly_what_the_validation_accepts(
    field: str, value: str
) -> None:
    """What the OpenAPI document calls valid is accepted, and what it calls invalid is refused,
    trimming and all: schemathesis holds every API to this."""
    import re

    schema = Documented.model_json_schema()["properties"][field]
    documented = len(value) <= schema.get("maxLength", len(value)) and bool(
        re.fullmatch(schema["pattern"], value)
    )
    valid = {"name": "Amina", "reason": "moved", "location": "KE", "email": "a@b.ke"}
    valid[field] = value
    try:
        Documented.model_validate(valid)
        accepted = True
    except ValidationError:
        accepted = False
    assert documented == accepted


class Dated(RequestBody):
    day: Date | None = None
    at: Timestamp | None = None
    tags: dict[Annotated[str, Text(min_length=1, max_length=8)], int] = {}


@pytest.mark.parametrize(
    ("values", "accepted"),
    [
        ({"day": "2024-03-02"}, True),
        ({"day": "0"}, False),  # lax pydantic: the Unix epoch
        ({"day": 0}, False),
        ({"day": "20240302"}, False),
        ({"at": "2024-03-02T10:00:00Z"}, True),
        ({"at": "2024-03-02T10:00:00.5+03:00"}, True),
        ({"at": "1700000000"}, False),
        ({"at": "2024-03-02T10:00:00"}, False),  # no offset
    ],
)
def test_dates_and_times_are_the_rfc_3339_forms_the_schema_names(
    values: dict[str, object], accepted: bool
) -> None:
    try:
        Dated.model_validate(values)
    except ValidationError:
        assert not accepted
    else:
        assert accepted


def test_request_bodies_are_strict_json_and_document_their_dict_keys() -> None:
    assert Dated.model_validate({"tags": {"a": 2.0}}).tags == {"a": 2}  # JSON's 2.0 is 2
    for bad in [{"tags": {"a": "2"}}, {"tags": {"a": True}}, {"tags": {"a\x01": 1}}]:
        with pytest.raises(ValidationError):
            Dated.model_validate(bad)
    tags = Dated.model_json_schema()["properties"]["tags"]
    assert "patternProperties" not in tags
    assert tags["propertyNames"]["pattern"].startswith("^")
    assert tags["additionalProperties"] == {"type": "integer"}
