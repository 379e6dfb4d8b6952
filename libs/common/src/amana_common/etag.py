"""Optimistic concurrency over HTTP: `ETag: "<version>"` on reads, `If-Match` on changes.

A change without `If-Match` is 428 (the client must say which version it edits), and one whose
`If-Match` names no current version is 412 with the current `ETag`, so a lost update is
impossible. Comparison is strong (RFC 9110 13.1.1): weak tags (`W/"3"`) never match, and `*`
is refused (428) because it would skip the check this header exists for. A malformed header
(control characters included) is 422 naming `If-Match`. The OpenAPI document declares the
header required, with the pattern of a list of entity tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header

from amana_common.errors import Problem, problem_doc, require_precondition_header
from amana_common.validation import Text

HEADER = "If-Match"
_TAG = r' *(?:W/)?"[\x21\x23-\x7e]*" *'
ENTITY_TAGS_PATTERN = f"^{_TAG}(?:,{_TAG})*$"
"""RFC 9110 8.8.3: a comma-separated list of entity tags (a tag may hold commas itself)."""
_ENTITY_TAGS = re.compile(ENTITY_TAGS_PATTERN)
_EACH_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e]*)"')
MAX_HEADER_LENGTH = 1000
MISSING = f'{HEADER} is required: send the ETag of the version you read, e.g. {HEADER}: "3"'
require_precondition_header(HEADER, MISSING)


def etag(version: int) -> str:
    return f'"{version}"'


@dataclass(frozen=True)
class IfMatch:
    """The strong entity tags an `If-Match` header named."""

    tags: frozenset[str]

    def require(self, version: int) -> None:
        """Raises 412 unless the resource's current `version` is one the client named."""
        if str(version) not in self.tags:
            raise Problem(
                412,
                "precondition-failed",
                f"{HEADER} does not match the current version {etag(version)}: "
                "read the resource again and retry your change on the current version",
                headers={"ETag": etag(version)},
            )


def parse_if_match(header: str | None) -> IfMatch:
    if header is None or not header.strip():
        raise Problem(428, "precondition-required", MISSING)
    if header.strip() == "*":
        raise Problem(428, "precondition-required", f"{HEADER} must name a version, not *")
    if _ENTITY_TAGS.fullmatch(header) is None:
        message = f'{HEADER} must be a list of entity tags such as "3"'
        raise Problem(
            422,
            "invalid-if-match",
            message,
            errors=[{"field": HEADER, "in": "header", "message": message}],
        )
    weak_or_strong = (match.groups() for match in _EACH_TAG.finditer(header))
    return IfMatch(frozenset(tag for weak, tag in weak_or_strong if weak is None))


def _header(description: str) -> Any:
    return Header(
        alias=HEADER,
        description=description,
        json_schema_extra={"pattern": ENTITY_TAGS_PATTERN},
    )


IfMatchHeader = Annotated[
    str,
    Text(max_length=MAX_HEADER_LENGTH),
    _header('The ETag of the version you read, e.g. `"3"`; 428 when missing'),
]
OptionalIfMatchHeader = Annotated[
    str | None,
    Text(max_length=MAX_HEADER_LENGTH),
    _header("Optional (a PUT that may create): when given, the ETag of the version you read"),
]
"""For a PUT that creates or replaces: without If-Match it creates or replaces unconditionally."""


def _if_match(if_match: IfMatchHeader) -> IfMatch:
    return parse_if_match(if_match)


IfMatchDep = Annotated[IfMatch, Depends(_if_match)]


IF_MATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    412: problem_doc("Precondition failed: If-Match names a stale version"),
    428: problem_doc("Precondition required: If-Match is missing"),
}
