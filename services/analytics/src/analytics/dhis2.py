"""DHIS2 `dataValueSets`: the configured mapping and the payload built from a report (pure).

A mapping says, per report, which of its columns become which data element, with a fixed
category option combo or one chosen by the row's own dimensions (sex, age band, ...); which
organisation unit each location code is (or that location codes are DHIS2 org unit codes);
and the DHIS2 period type of the export. The payload follows the DHIS2 Web API's data value
set format: `{"dataSet"?, "completeDate"?, "attributeOptionCombo"?, "dataValues": [{
"dataElement", "period", "orgUnit", "categoryOptionCombo"?, "value", "comment"?}]}`.
Values are strings; periods are DHIS2 period identifiers (`202611`, `2026Q4`, `2026W45`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from amana_common.validation import LocationCode
from analytics.domain import DHIS2_PERIOD_TYPES, Dhis2PeriodType, dhis2_period

Dhis2Uid = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9]{10}$")]
"""A DHIS2 identifier: 11 characters, a letter then letters or digits."""

MAX_DATA_VALUES = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeasureMapping(_Strict):
    """One report column sent as one data element."""

    data_element: Dhis2Uid
    category_option_combo: Dhis2Uid | None = Field(
        default=None, description="A fixed category option combo (default: DHIS2's default)"
    )
    disaggregate_by: list[str] = Field(
        default_factory=list,
        description='Row dimensions that choose the category option combo, e.g. ["sex"]',
    )
    category_option_combos: dict[str, Dhis2Uid] = Field(
        default_factory=dict,
        description="The combo for each value of `disaggregate_by`, joined by `|`: "
        '{"female|18-34": "..."}',
    )

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> MeasureMapping:
        if self.disaggregate_by and self.category_option_combo:
            raise ValueError("give category_option_combo or disaggregate_by, not both")
        if self.category_option_combos and not self.disaggregate_by:
            raise ValueError("category_option_combos needs disaggregate_by")
        return self


class ReportMapping(_Strict):
    measures: dict[str, MeasureMapping] = Field(min_length=1)


class Dhis2Mapping(_Strict):
    data_set: Dhis2Uid | None = None
    period_type: Dhis2PeriodType = "Monthly"
    org_unit_scheme: Literal["uid", "code"] = Field(
        default="uid",
        description="uid: org units from `org_units`; code: the location code is the org unit "
        "code (pushed with orgUnitIdScheme=CODE)",
    )
    org_units: dict[LocationCode, Dhis2Uid] = Field(default_factory=dict)
    attribute_option_combo: Dhis2Uid | None = None
    reports: dict[str, ReportMapping] = Field(min_length=1)


@dataclass(frozen=True)
class Unmapped:
    """What the mapping lacks for a report, each named."""

    field: str
    message: str


class UnmappedElements(ValueError):
    def __init__(self, problems: Sequence[Unmapped]) -> None:
        super().__init__("; ".join(p.message for p in problems[:10]))
        self.problems = list(problems)


def disaggregation_dimensions(mapping: ReportMapping) -> list[str]:
    dims: list[str] = []
    for measure in mapping.measures.values():
        dims += [d for d in measure.disaggregate_by if d not in dims]
    return dims


def check_measures(report: str, mapping: ReportMapping, columns: Sequence[str]) -> None:
    problems = [
        Unmapped(f"reports.{report}.measures.{name}", f"{report} has no column {name!r}")
        for name in mapping.measures
        if name not in columns
    ]
    if problems:
        raise UnmappedElements(problems)


def data_value_set(
    report: str,
    rows: Sequence[Mapping[str, Any]],
    mapping: Dhis2Mapping,
    row_period: str,
    complete_date: date | None = None,
) -> dict[str, Any]:
    """The payload for `rows` of `report`. Every row has `location` and the date column named
    by `row_period`; a row value that is None is not sent. Raises UnmappedElements naming
    every location, combination or report the mapping lacks."""
    report_mapping = mapping.reports.get(report)
    if report_mapping is None:
        raise UnmappedElements(
            [Unmapped(f"reports.{report}", f"the DHIS2 mapping has no report {report!r}")]
        )
    problems: dict[str, Unmapped] = {}
    values: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str, str]] = set()
    for row in rows:
        org_unit = _org_unit(mapping, str(row["location"]), problems)
        period = dhis2_period(row[row_period], mapping.period_type)
        for column, measure in report_mapping.measures.items():
            value = row.get(column)
            combo = _combo(report, column, measure, row, problems)
            if value is None or org_unit is None or combo is False:
                continue
            key = (measure.data_element, period, org_unit, combo or "")
            if key in seen:
                problems[f"collision:{key}"] = Unmapped(
                    f"reports.{report}.measures.{column}",
                    f"two rows give {column} for org unit {org_unit} in {period}: "
                    "filter the report (e.g. by programme) or disaggregate the measure",
                )
                continue
            seen.add(key)
            values.append(_data_value(measure, period, org_unit, combo, value))
    if problems:
        raise UnmappedElements(list(problems.values()))
    if len(values) > MAX_DATA_VALUES:
        raise UnmappedElements(
            [Unmapped("report", f"{len(values)} data values is over {MAX_DATA_VALUES}")]
        )
    payload: dict[str, Any] = {}
    if mapping.data_set:
        payload["dataSet"] = mapping.data_set
    if complete_date is not None:
        payload["completeDate"] = complete_date.isoformat()
    if mapping.attribute_option_combo:
        payload["attributeOptionCombo"] = mapping.attribute_option_combo
    payload["dataValues"] = values
    return payload


def _org_unit(mapping: Dhis2Mapping, location: str, problems: dict[str, Unmapped]) -> str | None:
    if mapping.org_unit_scheme == "code":
        return location
    org_unit = mapping.org_units.get(location)
    if org_unit is None:
        problems[f"location:{location}"] = Unmapped(
            f"org_units.{location}", f"location {location} has no DHIS2 org unit"
        )
    return org_unit


def _combo(
    report: str,
    column: str,
    measure: MeasureMapping,
    row: Mapping[str, Any],
    problems: dict[str, Unmapped],
) -> str | Literal[False] | None:
    """The category option combo of this row's value; False when it is not mapped."""
    if not measure.disaggregate_by:
        return measure.category_option_combo
    key = "|".join(str(row.get(d)) for d in measure.disaggregate_by)
    combo = measure.category_option_combos.get(key)
    if combo is None:
        field = f"reports.{report}.measures.{column}.category_option_combos.{key}"
        problems[field] = Unmapped(field, f"{column} for {key!r} has no category option combo")
        return False
    return combo


def _data_value(
    measure: MeasureMapping, period: str, org_unit: str, combo: str | None, value: Any
) -> dict[str, Any]:
    data_value = {"dataElement": measure.data_element, "period": period, "orgUnit": org_unit}
    if combo:
        data_value["categoryOptionCombo"] = combo
    data_value["value"] = _value_text(value)
    return data_value


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(round(value, 4))
    return str(value)


# --- import summaries -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportSummary:
    status: str
    imported: int
    updated: int
    ignored: int
    deleted: int
    conflicts: list[dict[str, Any]]
    description: str | None


MAX_CONFLICTS_KEPT = 50


def import_summary(document: Mapping[str, Any]) -> ImportSummary:
    """DHIS2's answer to a data value set import: an ImportSummary, or (2.38 and later) a web
    message wrapping one in `response`."""
    summary = document.get("response") if "response" in document else document
    if not isinstance(summary, Mapping) or "importCount" not in summary:
        raise ValueError("the answer holds no import summary")
    counts = summary.get("importCount") or {}
    conflicts = [dict(c) for c in summary.get("conflicts") or [] if isinstance(c, Mapping)]
    return ImportSummary(
        status=str(summary.get("status") or document.get("status") or "UNKNOWN"),
        imported=int(counts.get("imported", 0)),
        updated=int(counts.get("updated", 0)),
        ignored=int(counts.get("ignored", 0)),
        deleted=int(counts.get("deleted", 0)),
        conflicts=conflicts[:MAX_CONFLICTS_KEPT],
        description=summary.get("description") or document.get("message"),
    )


__all__ = ["DHIS2_PERIOD_TYPES", "Dhis2Mapping", "UnmappedElements", "data_value_set"]
