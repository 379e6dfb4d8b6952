"""Field types every API validates the same way: text, ISO 4217 currencies, ISO 3166-1
countries, location codes, E.164 phones, e-mail addresses, dates and ids, lists without
repeats, and `RequestBody`, the base of every request body.

The OpenAPI schema of each type says exactly what it accepts (pattern, length, enumeration,
`uniqueItems`), so a request the documentation calls valid is never refused for its shape, and
one it calls invalid is never coerced into a valid one (`RequestBody` is strict: `0` is not a
boolean, `"1"` is not a number).

Every string a client sends (body fields, query parameters, headers) goes through `Text`, so
bad input is a 422 naming the field, never a 500 from the database driver:

- single-line text refuses every control character (C0 including tab, CR and LF, DEL, C1
  including NEL U+0085), the line and paragraph separators U+2028/U+2029 and lone surrogates
  (a JSON `"\\ud800"` decodes to one; PostgreSQL and UTF-8 refuse it);
- multi-line text (`Text(multiline=True)`: addresses, reasons) allows LF (`\\n`) and nothing
  else of the above;
- the check runs on the value as sent, before outer whitespace is trimmed, so a trailing
  control character is refused, not silently dropped.

Use the named types (`Name`, `SingleLine`, `MultiLine`, `LocationCode`, ...) or
`Annotated[str, Text(min_length=1, max_length=100)]` for other bounds; never a bare `str` in a
request model or query parameter (a test sweeps every string field of every request model).

ISO 4217 is a committed list, not a network lookup: the currencies in circulation (List One),
without funds codes (BOV, CLF, USN, ...), precious metals (XAU, ...), SDR/units of account
and the test and "no currency" codes (XTS, XXX). Update it when ISO amends List One.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

_ISO_4217_LIST_ONE = """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
    KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU
    MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON
    RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND
    TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR
    ZMW ZWG
"""
ISO_4217: frozenset[str] = frozenset(_ISO_4217_LIST_ONE.split())


LOCATION_CODE_PATTERN = r"^[A-Z0-9][A-Z0-9._-]{0,49}$"

H = TypeVar("H", bound=Hashable)
T = TypeVar("T")


_SINGLE_LINE_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_MULTI_LINE_REFUSED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The same rule for OpenAPI readers (JSON Schema regexes cannot name lone surrogates).
# The same rules for OpenAPI readers (JSON Schema regexes cannot name lone surrogates): the
# characters a text may hold, those trimmed at its ends (Unicode White_Space that is not a
# control), and those that are neither.
_REFUSED = "\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029"
_ALLOWED = {
    False: f"[^{_REFUSED}]",
    True: "[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f\\u2028\\u2029]",
}
_TRIMMED = {False: "[ \\u00a0\\u1680\\u2000-\\u200a\\u202f\\u205f\\u3000]"}
_TRIMMED[True] = _TRIMMED[False][:-1] + "\\n]"
_PRINTING = (
    "[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
)
_SINGLE_LINE_PATTERN = f"^{_ALLOWED[False]}*$"
_MULTI_LINE_PATTERN = f"^{_ALLOWED[True]}*$"


def _trimmed_length_pattern(min_length: int, max_length: int | None, multiline: bool) -> str:
    """Allowed characters only, and at least `min_length` of them between the first and the
    last that trimming keeps (bounded by `max_length`, so that generators need not filter)."""
    allowed, trimmed, kept = _ALLOWED[multiline], _TRIMMED[multiline], _PRINTING
    most = "" if max_length is None else str(max(max_length - 2, 0))
    if min_length <= 0:
        return f"^{allowed}{{0,{'' if max_length is None else max_length}}}$"
    if min_length == 1:
        return f"^{trimmed}*{kept}(?:{allowed}{{0,{most}}}{kept})?{trimmed}*$"
    return f"^{trimmed}*{kept}{allowed}{{{min_length - 2},{most}}}{kept}{trimmed}*$"


def refused_character(value: str, multiline: bool = False) -> str | None:
    """Why `value` is not acceptable text (naming the character, not the value), or None."""
    match = (_MULTI_LINE_REFUSED if multiline else _SINGLE_LINE_REFUSED).search(value)
    if match is None:
        return None
    code_point = ord(match.group())
    return f"contains {_kind(code_point)} (U+{code_point:04X}) at position {match.start()}"


def _kind(code_point: int) -> str:
    if 0xD800 <= code_point <= 0xDFFF:
        return "a lone surrogate"
    if code_point in (0x2028, 0x2029):
        return "a line or paragraph separator"
    return "a control character"


@dataclass(frozen=True)
class Text:
    """Constraints of a text field: `Annotated[str, Text(min_length=1, max_length=100)]`.

    Refuses control characters and lone surrogates (LF allowed when `multiline`) and values
    longer than `max_length`, then trims outer whitespace (`strip`) and checks that what is left
    has at least `min_length` characters. A field with a `pattern` (a code, an e-mail address)
    is not trimmed: the value must match it as sent, and the pattern must itself exclude the
    refused characters (the JSON schema shows only it). The JSON schema states exactly this.
    """

    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    multiline: bool = False
    strip: bool = True

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        text = core_schema.str_schema(
            strip_whitespace=self.trims,
            min_length=self.min_length,
            pattern=self.pattern,
        )
        return core_schema.no_info_before_validator_function(self._check_as_sent, text)

    @property
    def trims(self) -> bool:
        return self.strip and self.pattern is None

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if self.max_length is not None:
            json_schema["maxLength"] = self.max_length
        if self.trims:  # a pattern of json_schema_extra (a header's syntax) is kept
            json_schema.setdefault(
                "pattern",
                _trimmed_length_pattern(self.min_length or 0, self.max_length, self.multiline),
            )
        elif self.pattern is None:
            json_schema["pattern"] = _MULTI_LINE_PATTERN if self.multiline else _SINGLE_LINE_PATTERN
        return json_schema

    def _check_as_sent(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if reason := refused_character(value, self.multiline):
            raise ValueError(reason)
        if self.max_length is not None and len(value) > self.max_length:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": self.max_length},
            )
        return value


def _iso_4217(code: str) -> str:
    if code not in ISO_4217:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code in circulation")
    return code


def unique_items(values: list[H]) -> list[H]:
    """A repeated item is an error, not silently merged."""
    seen: set[H] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed more than once")
        seen.add(value)
    return values


Name = Annotated[str, Text(min_length=1, max_length=200)]
"""A person's or an organisation's name: one line of 1-200 characters after trimming."""
SingleLine = Annotated[str, Text(min_length=1, max_length=500)]
"""One line of free text, 1-500 characters."""
MultiLine = Annotated[str, Text(min_length=1, max_length=2000, multiline=True)]
"""Free text that may span lines (LF only), 1-2000 characters."""
CurrencyCode = Annotated[
    str,
    Text(pattern=r"^[A-Z]{3}$", strip=False),
    AfterValidator(_iso_4217),
    Field(json_schema_extra={"enum": sorted(ISO_4217)}),
]
"""ISO 4217, a currency in circulation (the schema lists them)."""
CountryCode = Annotated[str, Text(pattern=r"^[A-Z]{2}$", strip=False)]
"""ISO 3166-1 alpha-2, checked by shape (two capital letters)."""
LocationCode = Annotated[str, Text(pattern=LOCATION_CODE_PATTERN)]
"""An administrative area code such as `KE-047-0101`; see `amana_common.locations`."""
Phone = Annotated[str, Text(pattern=r"^\+[1-9][0-9]{6,14}$", strip=False)]
"""E.164."""
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f-\x9f\u2028\u2029]"
Email = Annotated[
    str, Text(max_length=254, pattern=f"^{_EMAIL_PART}{{1,64}}@{_EMAIL_PART}+\\.{_EMAIL_PART}+$")
]


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


@dataclass(frozen=True)
class _NullUndocumented:
    """Leaves `null` out of a `T | None` field's JSON schema (pydantic still sees an Optional,
    so errors name the field plainly)."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        options = [o for o in json_schema.get("anyOf", []) if o != {"type": "null"}]
        if len(options) == 1:
            del json_schema["anyOf"]
            json_schema.update(options[0])
        return json_schema


Omittable = Annotated[T | None, AfterValidator(_not_null), _NullUndocumented()]
"""A PATCH field that may be left out (default None) but not sent as null (nor documented so)."""

UniqueList = Annotated[
    list[H], AfterValidator(unique_items), Field(json_schema_extra={"uniqueItems": True})
]
"""`UniqueList[CurrencyCode]`: a list in which an item listed twice is a validation error."""


class RequestBody(BaseModel):
    """The base of every request body. Unknown fields are refused (a misspelt field must not be
    silently dropped), and JSON values are taken as what they are: pydantic's lax mode would
    read `0` as `false` and `"12"` as 12, accepting what the schema calls invalid. JSON has no
    date or id type, so fields of those types use `Date`, `Timestamp` and `Id`."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        for node in handler.resolve_ref_schema(json_schema).get("properties", {}).values():
            key_rules_as_property_names(node)
        return json_schema

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers_are_integers(cls, data: Any) -> Any:
        """JSON (and JSON Schema's `integer`) does not tell 3.0 from 3: neither does this."""
        return _integers_for_integral_floats(data)


def key_rules_as_property_names(node: dict[str, Any]) -> None:
    """pydantic documents a dict's key rules as `patternProperties`, which lets any other key
    through; `propertyNames` says what is checked: every key follows them."""
    for option in node.get("anyOf", []):
        key_rules_as_property_names(option)
    pattern_properties = node.get("patternProperties")
    if node.get("type") == "object" and pattern_properties and len(pattern_properties) == 1:
        [(pattern, values)] = pattern_properties.items()
        del node["patternProperties"]
        node["propertyNames"] = {"pattern": pattern}
        node["additionalProperties"] = values


def _integers_for_integral_floats(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integers_for_integral_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers_for_integral_floats(item) for item in value]
    return value


def exactly_one(field: str, value: str) -> dict[str, Any]:
    """JSON Schema of a list holding exactly one object whose `field` is `value`."""
    return {
        "contains": {
            "type": "object",
            "properties": {field: {"const": value}},
            "required": [field],
        },
        "minContains": 1,
        "maxContains": 1,
    }


def at_most_one_each(field: str, values: Iterable[str]) -> dict[str, Any]:
    """JSON Schema of a list of objects in which no two have the same `field` (one of `values`)."""
    return {
        "allOf": [
            {
                "contains": {"type": "object", "properties": {field: {"const": value}}},
                "minContains": 0,
                "maxContains": 1,
            }
            for value in values
        ]
    }


_RFC_3339_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC_3339_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)


def _not_a_json_number(value: object) -> object:
    if isinstance(value, bool | int | float):
        raise ValueError("must be a string")
    return value


def _rfc_3339(pattern: re.Pattern[str], what: str) -> Any:
    """Only the RFC 3339 form JSON Schema's `format` names: pydantic's lax parsing also reads
    "0" or "1700000000" as a Unix time, which the documented format does not allow."""

    def check(value: object) -> object:
        value = _not_a_json_number(value)
        if isinstance(value, str) and not pattern.fullmatch(value):
            raise ValueError(f"must be an RFC 3339 {what}")
        return value

    return BeforeValidator(check)


Date = Annotated[date, Strict(False), _rfc_3339(_RFC_3339_DATE, "date (2024-03-02)")]
"""An ISO 8601 / RFC 3339 date (`"2024-03-02"`): in a `RequestBody` or a query parameter."""
Timestamp = Annotated[
    AwareDatetime,
    Strict(False),
    _rfc_3339(_RFC_3339_TIME, "date-time with its offset (2024-03-02T10:00:00Z)"),
]
"""An RFC 3339 date and time with its offset: in a `RequestBody` or a query parameter."""
Id = Annotated[UUID, Strict(False), BeforeValidator(_not_a_json_number)]
"""A UUID (`"0193...-..."`) in a `RequestBody`."""
