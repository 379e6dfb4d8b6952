"""Analytics request and response models.

Report queries are read from the raw query string so that an unknown parameter is refused by
name (FastAPI would ignore it): every value is checked by a pattern that admits no control
character, and a period is parsed into days.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from amana_common.validation import LOCATION_CODE_PATTERN, Text
from analytics.domain import (
    INTERVAL_PERIOD_TYPE,
    Interval,
    InvalidPeriod,
    InvalidQuery,
    Period,
    ReportSpec,
    check_level,
    parse_group_by,
    parse_period,
    unknown_parameters,
)

CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
LOCATION_PATTERN = re.compile(LOCATION_CODE_PATTERN)
MAX_VALUE_LENGTH = 200

Format = Literal["json", "csv"]


@dataclass(frozen=True)
class ReportQuery:
    """A report's filters as the client gave them, checked."""

    programme: str | None = None
    cycle: UUID | None = None
    period: Period | None = None
    location: str | None = None
    level: int = 2
    provider: str | None = None
    group_by: tuple[str, ...] = ()
    interval: Interval = "month"
    format: Format = "json"

    def echo(self) -> dict[str, Any]:
        """The filters as the report states them back."""
        filters: dict[str, Any] = {
            "programme": self.programme,
            "cycle": str(self.cycle) if self.cycle else None,
            "period": self.period.label if self.period else None,
            "location": self.location,
            "level": self.level,
            "provider": self.provider,
        }
        return {name: value for name, value in filters.items() if value is not None}


def parse_report_query(spec: ReportSpec, params: Mapping[str, list[str]]) -> ReportQuery:
    """Raises InvalidQuery naming the parameter at fault."""
    if unknown := unknown_parameters(spec, params):
        accepted = ", ".join(sorted(spec.parameters))
        raise InvalidQuery(
            unknown[0], f"{spec.name} does not take {', '.join(unknown)} (it takes {accepted})"
        )
    values: dict[str, str] = {}
    for name, given in params.items():
        if len(given) != 1:
            raise InvalidQuery(name, "is given more than once")
        if len(given[0]) > MAX_VALUE_LENGTH:
            raise InvalidQuery(name, f"is longer than {MAX_VALUE_LENGTH} characters")
        values[name] = given[0]
    location = _matching(values, "location", LOCATION_PATTERN, "a location code such as KE-047")
    level = _level(values.get("level"))
    return ReportQuery(
        programme=_matching(values, "programme", CODE_PATTERN, "a programme id or code"),
        cycle=_uuid(values.get("cycle")),
        period=_period(values.get("period")),
        location=location,
        level=check_level(location, level),
        provider=_matching(values, "provider", CODE_PATTERN, "a provider id or code"),
        group_by=parse_group_by(spec, values.get("group_by")),
        interval=_interval(values.get("interval")),
        format=_format(values.get("format")),
    )


def _matching(
    values: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str
) -> str | None:
    value = values.get(name)
    if value is None:
        return None
    if not pattern.match(value):
        raise InvalidQuery(name, f"must be {what}")
    return value


def _level(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 2:
        raise InvalidQuery("level", "must be a whole number between 1 and 10")
    return int(value)


def _uuid(value: str | None) -> UUID | None:
    if value is None:
        return None
    try:
        return UUID(value)
    except ValueError as error:
        raise InvalidQuery("cycle", "must be a cycle id (a UUID)") from error


def _period(value: str | None) -> Period | None:
    if value is None:
        return None
    try:
        return parse_period(value)
    except InvalidPeriod as error:
        raise InvalidQuery("period", str(error)) from error


def _interval(value: str | None) -> Interval:
    if value is None:
        return "month"
    if value not in INTERVAL_PERIOD_TYPE:
        raise InvalidQuery("interval", f"must be one of {', '.join(INTERVAL_PERIOD_TYPE)}")
    return value


def _format(value: str | None) -> Format:
    if value is None or value == "json":
        return "json"
    if value == "csv":
        return "csv"
    raise InvalidQuery("format", "must be json or csv")


class ReportOut(BaseModel):
    """A report: its filters as understood, its columns, and its rows."""

    report: str
    title: str
    filters: dict[str, Any]
    group_by: list[str]
    columns: list[str]
    rows: list[dict[str, Any]]


class ReportIndexItem(BaseModel):
    name: str
    title: str
    parameters: list[str]
    dimensions: list[str]
    href: str


ReportName = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,30}$")]


FilterValue = Annotated[str, Text(min_length=1, max_length=MAX_VALUE_LENGTH)]


class PushFilters(BaseModel):
    """A report's query parameters, as `GET /reports/{name}` takes them; which ones a report
    takes, and the codes they name, are checked against the report and the stored data."""

    model_config = ConfigDict(extra="forbid")

    programme: FilterValue | None = None
    cycle: FilterValue | None = None
    period: FilterValue | None = None
    location: FilterValue | None = None
    level: FilterValue | None = None
    provider: FilterValue | None = None
    interval: FilterValue | None = None

    def params(self) -> dict[str, list[str]]:
        return {name: [value] for name, value in self.model_dump(exclude_none=True).items()}


class PushIn(BaseModel):
    """A push of a report to the configured DHIS2 instance."""

    model_config = ConfigDict(extra="forbid")

    report: ReportName
    filters: PushFilters = Field(
        default_factory=PushFilters, description="The report's query parameters"
    )
    dry_run: bool = Field(default=False, description="Ask DHIS2 to check without saving")


class PushOut(BaseModel):
    push_id: UUID
    report: str
    filters: dict[str, Any]
    target: str
    data_values: int
    status: str
    http_status: int | None
    imported: int
    updated: int
    ignored: int
    deleted: int
    conflicts: list[dict[str, Any]]
    error: str | None
    requested_at: datetime

    model_config = ConfigDict(from_attributes=True)
