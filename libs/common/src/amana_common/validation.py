"""Field types every API validates the same way: text, ISO 4217 currencies, ISO 3166-1
countries, location codes, E.164 phones, e-mail addresses, and lists without repeats.

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
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

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
_SINGLE_LINE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"
_MULTI_LINE_PATTERN = "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"


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

    Refuses control characters and lone surrogates (LF allowed when `multiline`), then trims
    outer whitespace (`strip`) and checks the length and `pattern` of what is left.
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
            strip_whitespace=self.strip,
            min_length=self.min_length,
            max_length=self.max_length,
            pattern=self.pattern,
        )
        return core_schema.no_info_before_validator_function(self._refuse_characters, text)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault(
            "pattern", _MULTI_LINE_PATTERN if self.multiline else _SINGLE_LINE_PATTERN
        )
        return json_schema

    def _refuse_characters(self, value: Any) -> Any:
        if isinstance(value, str) and (reason := refused_character(value, self.multiline)):
            raise ValueError(reason)
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
CurrencyCode = Annotated[str, Text(pattern=r"^[A-Z]{3}$", strip=False), AfterValidator(_iso_4217)]
CountryCode = Annotated[str, Text(pattern=r"^[A-Z]{2}$", strip=False)]
"""ISO 3166-1 alpha-2, checked by shape (two capital letters)."""
LocationCode = Annotated[str, Text(pattern=LOCATION_CODE_PATTERN)]
"""An administrative area code such as `KE-047-0101`; see `amana_common.locations`."""
Phone = Annotated[str, Text(pattern=r"^\+[1-9][0-9]{6,14}$", strip=False)]
"""E.164."""
Email = Annotated[str, Text(max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")]


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


Omittable = Annotated[T | None, AfterValidator(_not_null)]
"""A PATCH field that may be left out (default None) but not sent as null."""

UniqueList = Annotated[list[H], AfterValidator(unique_items)]
"""`UniqueList[CurrencyCode]`: a list in which an item listed twice is a validation error."""
