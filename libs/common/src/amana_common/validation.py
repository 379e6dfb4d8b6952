"""Field types every API validates the same way: ISO 4217 currencies, ISO 3166-1 countries,
location codes, E.164 phones, and lists without repeats.

ISO 4217 is a committed list, not a network lookup: the currencies in circulation (List One),
without funds codes (BOV, CLF, USN, ...), precious metals (XAU, ...), SDR/units of account
and the test and "no currency" codes (XTS, XXX). Update it when ISO amends List One.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Annotated, TypeVar

from pydantic import AfterValidator, StringConstraints

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


CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), AfterValidator(_iso_4217)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
"""ISO 3166-1 alpha-2, checked by shape (two capital letters)."""
LocationCode = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=LOCATION_CODE_PATTERN)
]
"""An administrative area code such as `KE-047-0101`; see `amana_common.locations`."""
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
"""E.164."""
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
    ),
]


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


Omittable = Annotated[T | None, AfterValidator(_not_null)]
"""A PATCH field that may be left out (default None) but not sent as null."""

UniqueList = Annotated[list[H], AfterValidator(unique_items)]
"""`UniqueList[CurrencyCode]`: a list in which an item listed twice is a validation error."""
