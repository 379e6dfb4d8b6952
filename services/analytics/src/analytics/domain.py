"""Analytics rules: pure, no HTTP, no session.

- what of an event may be kept (never a name, identifier, phone, account, date of birth or a
  human reference), and the pseudonymous keys of what is about people;
- which of two versions of a household, or two outcomes of a payment, wins;
- how a fact contributes to the pre-aggregated totals, and the delta when it changes;
- location levels, report periods (ISO and DHIS2 forms) and the ratios reports show.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal, TypeVar
from uuid import UUID

from amana_common.locations import ancestors_or_self
from amana_contracts.demographics import age_band
from amana_contracts.disbursement import (
    PaymentEventV1,
    PaymentFailedV1,
    PaymentReversedV1,
    PaymentSettledV1,
)
from amana_contracts.registry import HouseholdSnapshotV1

KEY_BYTES = 16
UNKNOWN = "unknown"

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


# --- pseudonymous keys ------------------------------------------------------------------------


def pseudonym(secret: bytes, kind: str, value: UUID) -> bytes:
    """A stable key for an aggregate about a person (household, payment, flag) that cannot be
    traced back without the secret: keyed BLAKE2b (a MAC) of the id, personalised by kind,
    16 bytes."""
    key = secret if len(secret) <= MAX_BLAKE2B_KEY else hashlib.sha256(secret).digest()
    return hashlib.blake2b(
        value.bytes, key=key, person=kind.encode()[:16], digest_size=KEY_BYTES
    ).digest()


MAX_BLAKE2B_KEY = 64


# --- locations --------------------------------------------------------------------------------


def location_level(code: str) -> int:
    return len(ancestors_or_self(code))


def default_level(location: str | None) -> int:
    """Without `level`, a report shows the children of the location filter, or level 2."""
    return location_level(location) + 1 if location else 2


# --- households -------------------------------------------------------------------------------

HouseholdTotalKey = tuple[str, date, str, str, str]  # location, enrolled on, status, head sex/band
MemberTotalKey = tuple[str, date, str, str, str]  # location, enrolled on, status, sex, age band


@dataclass(frozen=True)
class HouseholdRow:
    """What analytics keeps of a household snapshot."""

    household_key: bytes
    version: int
    location_code: str
    status: str
    enrolled_on: date
    head_sex: str
    head_age_band: str
    composition: Mapping[str, int]  # "sex|age band" -> members

    @property
    def members(self) -> int:
        return sum(self.composition.values())


def household_row(snapshot: HouseholdSnapshotV1, as_of: date, secret: bytes) -> HouseholdRow:
    """Age bands on `as_of` (the event's date, so a replay computes the same bands); the dates
    of birth themselves are dropped here."""
    composition: Counter[str] = Counter()
    head_sex, head_band = UNKNOWN, UNKNOWN
    for member in snapshot.members:
        band = age_band(member.date_of_birth, as_of)
        composition[composition_key(member.sex, band)] += 1
        if member.is_head:
            head_sex, head_band = member.sex, band
    return HouseholdRow(
        household_key=pseudonym(secret, "household", snapshot.household_id),
        version=snapshot.version,
        location_code=snapshot.location_code,
        status=snapshot.status,
        enrolled_on=enrolment_date(snapshot.enrolled_at),
        head_sex=head_sex,
        head_age_band=head_band,
        composition=dict(sorted(composition.items())),
    )


def composition_key(sex: str, band: str) -> str:
    return f"{sex}|{band}"


def enrolment_date(enrolled_at: str) -> date:
    """`enrolled_at` is an RFC 3339 timestamp; its UTC date."""
    moment = datetime.fromisoformat(enrolled_at.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"enrolled_at {enrolled_at!r} has no time zone")
    return moment.astimezone(UTC).date()


def household_contributions(
    row: HouseholdRow, sign: int
) -> tuple[dict[HouseholdTotalKey, tuple[int, int]], dict[MemberTotalKey, int]]:
    """What one household adds to (sign 1) or takes from (sign -1) the totals."""
    base = (row.location_code, row.enrolled_on, row.status)
    households = {(*base, row.head_sex, row.head_age_band): (sign, sign * row.members)}
    members: dict[MemberTotalKey, int] = {}
    for key, count in row.composition.items():
        sex, band = key.split("|", 1)
        members[(*base, sex, band)] = sign * count
    return households, members


def is_newer_household(candidate: HouseholdRow, current: HouseholdRow | None) -> bool:
    return current is None or candidate.version > current.version


# --- payments ---------------------------------------------------------------------------------

Outcome = Literal["settled", "failed", "expired", "reversed"]
OUTCOMES: tuple[Outcome, ...] = ("settled", "failed", "expired", "reversed")
NON_PAYMENT: tuple[Outcome, ...] = ("failed", "expired", "reversed")
PaymentTotalKey = tuple[UUID, UUID, UUID, str, UUID, str, str, str, str, str, str]


@dataclass(frozen=True)
class PaymentRow:
    """A payment's outcome as analytics keeps it: where, through whom, to whom (sex and age
    band only), how much, and what became of it."""

    payment_key: bytes
    payroll_id: UUID
    programme_id: UUID
    cycle_id: UUID
    location_code: str
    provider_id: UUID
    mechanism: str
    sex: str
    age_band: str
    currency: str
    amount_minor: int
    fee_minor: int
    outcome: Outcome
    reason_code: str
    outcome_at: datetime
    rank: int

    def total_key(self) -> PaymentTotalKey:
        return (
            self.programme_id,
            self.cycle_id,
            self.payroll_id,
            self.location_code,
            self.provider_id,
            self.mechanism,
            self.sex,
            self.age_band,
            self.currency,
            self.outcome,
            self.reason_code,
        )


# A payment ends settled, failed or expired (rank 1); a settled payment may later be reversed
# (rank 2). An outcome of a lower or equal rank than the one held changes nothing, so a replay,
# a duplicate or a late outcome never counts a payment twice.
OUTCOME_RANK: dict[Outcome, int] = {"settled": 1, "failed": 1, "expired": 1, "reversed": 2}


def payment_row(event: PaymentEventV1, secret: bytes) -> PaymentRow:
    outcome: Outcome
    fee = 0
    if isinstance(event, PaymentSettledV1):
        outcome, reason, at, fee = "settled", "", event.settled_at, event.fee_minor
    elif isinstance(event, PaymentFailedV1):
        outcome, reason, at = event.outcome, event.reason_code, event.failed_at
    elif isinstance(event, PaymentReversedV1):
        outcome, reason, at = "reversed", event.reason_code, event.reversed_at
    else:
        raise TypeError(f"not a payment outcome: {type(event).__name__}")
    return PaymentRow(
        payment_key=pseudonym(secret, "payment", event.payment_id),
        payroll_id=event.payroll_id,
        programme_id=event.programme_id,
        cycle_id=event.cycle_id,
        location_code=event.location_code,
        provider_id=event.provider_id,
        mechanism=event.mechanism,
        sex=event.recipient_sex,
        age_band=event.recipient_age_band,
        currency=event.currency,
        amount_minor=event.amount_minor,
        fee_minor=fee,
        outcome=outcome,
        reason_code=reason,
        outcome_at=at,
        rank=OUTCOME_RANK[outcome],
    )


def supersedes(candidate: PaymentRow, current: PaymentRow | None) -> bool:
    return current is None or candidate.rank > current.rank


def payment_contribution(row: PaymentRow, sign: int) -> dict[PaymentTotalKey, tuple[int, ...]]:
    return {row.total_key(): (sign, sign * row.amount_minor, sign * row.fee_minor)}


# --- batches and deltas -----------------------------------------------------------------------


def winners(items: Iterable[T], key: Callable[[T], K], beats: Callable[[T, T], bool]) -> list[T]:
    """One item per key: the first, unless a later one beats it (in event order)."""
    kept: dict[K, T] = {}
    for item in items:
        k = key(item)
        held = kept.get(k)
        if held is None or beats(item, held):
            kept[k] = item
    return list(kept.values())


@dataclass
class Deltas:
    """Changes to a totals table: key -> the amounts to add, summed; zero changes dropped."""

    width: int
    changes: dict[tuple[object, ...], list[int]] = field(default_factory=dict)

    def add(self, contributions: Mapping[K, int | tuple[int, ...]]) -> None:
        changes = self.changes
        for key, value in contributions.items():
            values = (value,) if isinstance(value, int) else value
            held = changes.get(key)  # type: ignore[call-overload]
            if held is None:
                changes[key] = list(values)  # type: ignore[index]
            else:
                for index, amount in enumerate(values):
                    held[index] += amount

    def rows(self) -> list[tuple[tuple[object, ...], list[int]]]:
        """Non-zero changes in key order: concurrent writers lock rows in the same order."""
        return sorted(
            ((key, values) for key, values in self.changes.items() if any(values)),
            key=lambda item: item[0],  # every position holds one type: ids, codes, dates
        )


# --- periods ----------------------------------------------------------------------------------

Dhis2PeriodType = Literal[
    "Daily", "Weekly", "Monthly", "BiMonthly", "Quarterly", "SixMonthly", "Yearly"
]
DHIS2_PERIOD_TYPES: tuple[Dhis2PeriodType, ...] = (
    "Daily",
    "Weekly",
    "Monthly",
    "BiMonthly",
    "Quarterly",
    "SixMonthly",
    "Yearly",
)
Interval = Literal["day", "week", "month", "quarter", "year"]
INTERVAL_PERIOD_TYPE: dict[Interval, Dhis2PeriodType] = {
    "day": "Daily",
    "week": "Weekly",
    "month": "Monthly",
    "quarter": "Quarterly",
    "year": "Yearly",
}


class InvalidPeriod(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    """Days from `start` (inclusive) to `end` (exclusive)."""

    start: date
    end: date
    label: str

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end


_PERIOD_FORMS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[date, date]]], ...]


def _month_span(year: int, month: int, months: int) -> tuple[date, date]:
    if not 1 <= month <= 12:
        raise InvalidPeriod(f"month {month} does not exist")
    index = year * 12 + month - 1 + months
    return date(year, month, 1), date(index // 12, index % 12 + 1, 1)


def _day(year: int, month: int, day: int) -> tuple[date, date]:
    try:
        start = date(year, month, day)
    except ValueError as error:
        raise InvalidPeriod(str(error)) from error
    return start, start + timedelta(days=1)


def _iso_week(year: int, week: int) -> tuple[date, date]:
    try:
        start = date.fromisocalendar(year, week, 1)
    except ValueError as error:
        raise InvalidPeriod(f"week {week} of {year} does not exist") from error
    return start, start + timedelta(weeks=1)


def _numbered(count: int, months: int) -> Callable[[re.Match[str]], tuple[date, date]]:
    def span(match: re.Match[str]) -> tuple[date, date]:
        number = int(match.group(2))
        if not 1 <= number <= count:
            raise InvalidPeriod(f"there is no part {number} of {count} in a year")
        return _month_span(int(match.group(1)), (number - 1) * months + 1, months)

    return span


_PERIOD_FORMS = (
    (re.compile(r"^(\d{4})$"), lambda m: _month_span(int(m.group(1)), 1, 12)),
    (re.compile(r"^(\d{4})Q(\d)$"), _numbered(4, 3)),
    (re.compile(r"^(\d{4})S(\d)$"), _numbered(2, 6)),
    (re.compile(r"^(\d{4})(\d{2})B$"), lambda m: _bimonth(int(m.group(1)), int(m.group(2)))),
    (re.compile(r"^(\d{4})-?(\d{2})$"), lambda m: _month_span(int(m.group(1)), int(m.group(2)), 1)),
    (re.compile(r"^(\d{4})-?W(\d{1,2})$"), lambda m: _iso_week(int(m.group(1)), int(m.group(2)))),
    (
        re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"),
        lambda m: _day(int(m.group(1)), int(m.group(2)), int(m.group(3))),
    ),
    (
        re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
        lambda m: _day(int(m.group(1)), int(m.group(2)), int(m.group(3))),
    ),
)


def _bimonth(year: int, month: int) -> tuple[date, date]:
    if month not in (1, 3, 5, 7, 9, 11):
        raise InvalidPeriod(f"a bi-month starts in an odd month, not {month:02d}")
    return _month_span(year, month, 2)


MAX_PERIOD_TEXT = 22
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")


def parse_period(text: str) -> Period:
    """A period as DHIS2 writes it (`2026`, `2026Q4`, `2026S2`, `202611B`, `202611`, `2026W45`,
    `20261105`), as ISO 8601 writes it (`2026-11`, `2026-W45`, `2026-11-05`), or a range of
    days `2026-11-01..2026-11-30` (both included)."""
    if len(text) > MAX_PERIOD_TEXT:
        raise InvalidPeriod("is too long to be a period")
    if match := _RANGE.match(text):
        first, last = (_day_of(part) for part in match.groups())
        if last < first:
            raise InvalidPeriod("ends before it starts")
        return Period(first, last + timedelta(days=1), text)
    for pattern, span in _PERIOD_FORMS:
        if match := pattern.match(text):
            start, end = span(match)
            if start.year < 1900 or start.year > 2999:
                raise InvalidPeriod(f"year {start.year} is out of range")
            return Period(start, end, text)
    raise InvalidPeriod(
        f"{text!r} is not a period: use yyyy, yyyyQn, yyyySn, yyyyMMB, yyyyMM or yyyy-MM, "
        "yyyyWn or yyyy-Wn, yyyyMMdd or yyyy-MM-dd, or yyyy-MM-dd..yyyy-MM-dd"
    )


def _day_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise InvalidPeriod(str(error)) from error


def dhis2_period(day: date, period_type: Dhis2PeriodType) -> str:
    """The DHIS2 period of `period_type` that contains `day` (weeks are ISO weeks)."""
    if period_type == "Daily":
        return day.strftime("%Y%m%d")
    if period_type == "Weekly":
        year, week, _ = day.isocalendar()
        return f"{year}W{week}"
    if period_type == "Monthly":
        return day.strftime("%Y%m")
    if period_type == "BiMonthly":
        return f"{day.year}{(day.month - 1) // 2 * 2 + 1:02d}B"
    if period_type == "Quarterly":
        return f"{day.year}Q{(day.month - 1) // 3 + 1}"
    if period_type == "SixMonthly":
        return f"{day.year}S{(day.month - 1) // 6 + 1}"
    return str(day.year)


def interval_label(day: date, interval: Interval) -> str:
    """The label of the interval that starts on `day`, as ISO 8601 writes it."""
    if interval == "day":
        return day.isoformat()
    if interval == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if interval == "month":
        return day.strftime("%Y-%m")
    if interval == "quarter":
        return f"{day.year}Q{(day.month - 1) // 3 + 1}"
    return str(day.year)


# --- figures ----------------------------------------------------------------------------------


def ratio(numerator: int | None, denominator: int | None) -> float | None:
    """numerator / denominator rounded to 4 places; None when there is nothing to divide by."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def group_sum(rows: Iterable[tuple[K, int]]) -> dict[K, int]:
    totals: dict[K, int] = defaultdict(int)
    for key, value in rows:
        totals[key] += value
    return dict(totals)


# Reasons a payment was not made, for reports: ISO 20022 ExternalStatusReason1Code and the
# codes the disbursement service documents. Unknown codes are shown as they are.
REASON_DESCRIPTIONS: dict[str, str] = {
    "AC01": "Incorrect account number",
    "AC04": "Closed account number",
    "AC06": "Blocked account",
    "AG01": "Transaction forbidden",
    "AM04": "Insufficient funds",
    "AM05": "Duplication",
    "BE01": "Inconsistent with end customer",
    "FF01": "Invalid file format",
    "MD07": "End customer deceased",
    "MS02": "Not specified reason: customer generated",
    "MS03": "Not specified reason: agent generated",
    "NARR": "Narrative",
    "RC01": "Bank identifier incorrect",
    "RR01": "Missing debtor account or identification",
    "RR04": "Regulatory reason",
    "TM01": "Cut-off time",
    "EXPIRED": "Payment window closed unpaid",
}


# --- reports ----------------------------------------------------------------------------------

FILTERS = ("programme", "cycle", "period", "location", "level", "provider")
PAYMENT_DIMENSIONS = ("programme", "cycle", "location", "provider", "mechanism", "sex", "age_band")


@dataclass(frozen=True)
class ReportSpec:
    """A report: the filters it takes, the dimensions it may be grouped by, and where its
    rows' dates come from (for DHIS2 periods: a cycle's start, an interval's start, or the
    `period` filter's start)."""

    name: str
    title: str
    filters: tuple[str, ...]
    dimensions: tuple[str, ...] = ()
    default_group_by: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    by_cycle: bool = False
    formats: bool = True

    @property
    def parameters(self) -> frozenset[str]:
        grouping = ("group_by",) if self.dimensions else ()
        formats = ("format",) if self.formats else ()
        return frozenset((*self.filters, *grouping, *self.extra, *formats))


REPORTS: dict[str, ReportSpec] = {
    spec.name: spec
    for spec in (
        ReportSpec(
            "enrolment",
            "Enrolment over time",
            ("period", "location", "level"),
            ("location",),
            (),
            extra=("interval",),
        ),
        ReportSpec(
            "households",
            "Households by location, status, and the head's sex and age band",
            ("period", "location", "level"),
            ("location", "status", "head_sex", "head_age_band"),
            ("location",),
        ),
        ReportSpec(
            "members",
            "Members by location, sex and age band",
            ("period", "location", "level"),
            ("location", "status", "sex", "age_band"),
            ("location", "sex", "age_band"),
        ),
        ReportSpec(
            "coverage", "Coverage: enrolled, eligible, on payroll, paid", FILTERS, by_cycle=True
        ),
        ReportSpec("payroll", "Payroll per cycle", FILTERS, by_cycle=True),
        ReportSpec(
            "outcomes",
            "Disbursement outcomes",
            FILTERS,
            PAYMENT_DIMENSIONS,
            ("provider",),
            by_cycle=True,
        ),
        ReportSpec(
            "non_payment_reasons",
            "Reasons for non-payment",
            FILTERS,
            PAYMENT_DIMENSIONS,
            (),
            by_cycle=True,
        ),
        ReportSpec(
            "timeliness",
            "Timeliness: approval to settlement",
            FILTERS,
            ("programme", "cycle", "location", "provider", "mechanism"),
            ("cycle",),
            by_cycle=True,
        ),
        ReportSpec(
            "duplicates",
            "Duplicate-review backlog and decision times",
            ("period", "location", "level"),
            ("location", "decision"),
            ("location",),
        ),
        ReportSpec("summary", "Key figures", FILTERS),
    )
}

MAX_LEVEL = 10


class InvalidQuery(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def unknown_parameters(spec: ReportSpec, names: Iterable[str]) -> list[str]:
    return sorted(set(names) - spec.parameters)


def parse_group_by(spec: ReportSpec, text: str | None) -> tuple[str, ...]:
    """`group_by=location,provider`: dimensions of the report, each once, in the given order;
    an empty value groups nothing (totals)."""
    if text is None:
        return spec.default_group_by
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if name not in spec.dimensions:
            allowed = ", ".join(spec.dimensions)
            raise InvalidQuery(
                "group_by", f"{name!r} is not a dimension of {spec.name} (use {allowed})"
            )
    if len(set(names)) != len(names):
        raise InvalidQuery("group_by", "a dimension is listed twice")
    return names


def check_level(location: str | None, level: int | None) -> int:
    """The level to group locations at; never above the location filter's own level."""
    if level is None:
        return default_level(location)
    if not 1 <= level <= MAX_LEVEL:
        raise InvalidQuery("level", f"must be between 1 and {MAX_LEVEL}")
    if location is not None and level < location_level(location):
        raise InvalidQuery(
            "level",
            f"level {level} is above location {location} (level {location_level(location)})",
        )
    return level
