"""The lookups an enrolment clerk makes all day (by household number, identifier, phone or
name) and the list filters, as use cases: the query is cleaned as at entry, then one indexed
query answers it (repository)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.errors import Problem
from amana_common.validation import LOCATION_CODE_PATTERN, Text, refused_character
from registry import repository
from registry.cleaning import (
    Cleaned,
    CleaningRules,
    clean_identifier,
    clean_name,
    clean_phone,
)
from registry.reference import attribute_types
from registry.schemas import SearchHit, SearchResults

DEFAULT_HITS = 20
MAX_HITS = 50
MIN_NAME_LENGTH = 3  # trigrams need three characters to say anything
OPERATORS = frozenset({"eq", "gt", "gte", "lt", "lte"})
RANGE_TYPES = frozenset({"number", "integer"})
MAX_FILTER_LENGTH = 200


def _refused(field: str, message: str) -> Problem:
    return Problem(
        422,
        "validation-error",
        f"{field}: {message}",
        errors=[{"field": field, "in": "query", "message": message}],
    )


def _cleaned(cleaned: Cleaned[str]) -> str:
    if cleaned.value is None:
        refusal = cleaned.report.refusals[0]
        raise _refused(refusal.field, refusal.message)
    return cleaned.value


@dataclass(frozen=True)
class SearchQuery:
    number: str | None
    identifier: str | None
    scheme: str | None
    phone: str | None
    name: str | None
    limit: int


async def run(session: AsyncSession, query: SearchQuery, rules: CleaningRules) -> SearchResults:
    given = {
        key: value
        for key, value in (
            ("number", query.number),
            ("identifier", query.identifier),
            ("phone", query.phone),
            ("name", query.name),
        )
        if value is not None
    }
    if len(given) != 1:
        raise _refused("query", "give exactly one of number, identifier, phone, name")
    by, value = next(iter(given.items()))
    if by == "number":
        hits = await repository.search_by_number(session, value.strip().upper())
    elif by == "identifier":
        compact = _cleaned(clean_identifier("identifier", query.scheme or "", value, {}))
        hits = await repository.search_by_identifier(session, compact, query.scheme, query.limit)
    elif by == "phone":
        e164 = _cleaned(clean_phone("phone", value, rules.phone_region))
        hits = await repository.search_by_phone(session, e164, query.limit)
    else:
        name = _cleaned(clean_name("name", value))
        if len(name) < MIN_NAME_LENGTH:
            raise _refused("name", f"give at least {MIN_NAME_LENGTH} characters")
        hits = await repository.search_by_name(session, name, query.limit)
    return SearchResults(
        by=by,
        items=[SearchHit.model_validate(hit, from_attributes=True) for hit in hits],
    )


LocationPrefix = Annotated[str, Text(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")]
"""A `location_code` filter as the query states it: `location_filter` checks it is a code."""


def location_filter(code: str | None) -> str | None:
    if code is None:
        return None
    normalised = code.strip().upper()
    if not re.fullmatch(LOCATION_CODE_PATTERN, normalised):
        raise _refused("location_code", "is not a location code")
    return normalised


def attribute_filters(raw: Sequence[str], rules: CleaningRules) -> list[repository.AttributeFilter]:
    """`pmt_score:lt:30` -> a filter, typed by the attribute's type in the schema."""
    schema = rules.attributes.schema
    types = attribute_types(schema if isinstance(schema, dict) else {})
    return [_attribute_filter(item, types) for item in raw]


def _attribute_filter(item: str, types: dict[str, str]) -> repository.AttributeFilter:
    if len(item) > MAX_FILTER_LENGTH or (reason := refused_character(item)):
        raise _refused("attribute", reason or f"at most {MAX_FILTER_LENGTH} characters")
    name, _, rest = item.partition(":")
    operator, _, value = rest.partition(":")
    if name not in types:
        raise _refused("attribute", f"{name!r} is not an eligibility attribute")
    if operator not in OPERATORS:
        raise _refused("attribute", f"operator must be one of {', '.join(sorted(OPERATORS))}")
    kind = types[name]
    if operator != "eq" and kind not in RANGE_TYPES:
        raise _refused("attribute", f"{name} is a {kind}: only eq applies")
    try:
        typed = _typed(kind, value)
    except ValueError:
        raise _refused("attribute", f"{name} takes a {kind} value") from None
    return repository.AttributeFilter(name, operator, typed)


def _typed(kind: str, value: str) -> bool | int | float | str:
    if kind == "boolean":
        if value not in ("true", "false"):
            raise ValueError(value)
        return value == "true"
    if kind == "integer":
        return int(value)
    if kind == "number":
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(value)
        return number
    return value
