"""Payroll rules, pure: no HTTP, no session.

- **Eligibility**: a JSON rule tree (`all` / `any` / `not` over comparisons) parsed into frozen
  dataclasses, validated against the deployment's eligibility attributes (every error names
  its path in the tree), evaluated in Python (the reference the tests compute by hand) and
  compiled to a SQLAlchemy boolean expression with bound parameters: never eval, never a value
  formatted into SQL.
- **Benefit formula**: a base amount, per-member top-ups by category up to a maximum count and
  an optional household cap, in integer minor units; evaluated and compiled the same way.
- **Budget priority**: who is left out first when the eligible households cost more than the
  cycle's budget.
- **Exclusions**: why an eligible household is not on the payroll.
- **Cycles**: the calendar a programme's frequency gives.
- **State machines** of programmes and payrolls, maker-checker and the budget check.
- **Chunks** of PayrollApproved, by line count and bytes.

Ages are completed years on the cycle's period start (`amana_contracts.demographics.age_on`):
in SQL, "at least N years old on D" is `date_of_birth <= born_by(D, N)`, which the tests check
against `age_on` day by day.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeAlias, cast, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    Double,
    Integer,
    Numeric,
    String,
    and_,
    any_,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    true,
)

from amana_common.locations import ancestors_or_self, covers
from amana_common.validation import LOCATION_CODE_PATTERN
from amana_contracts.demographics import AGE_BANDS, AgeBand, age_on
from amana_contracts.payroll import ExclusionReason, FrequencyUnit, ProgrammeStatus
from amana_contracts.registry import AttributeValue, HouseholdStatus, Sex

AttributeType = Literal["boolean", "integer", "number", "string"]
Operator = Literal["=", "!=", "<", "<=", ">", ">=", "in", "not_in", "within", "present"]
Order = Literal["asc", "desc"]

SEXES: tuple[Sex, ...] = get_args(Sex)
HOUSEHOLD_STATUSES: tuple[HouseholdStatus, ...] = get_args(HouseholdStatus)
ORDERING: tuple[Operator, ...] = ("=", "!=", "<", "<=", ">", ">=")
EQUALITY: tuple[Operator, ...] = ("=", "!=")
MEMBERSHIP: tuple[Operator, ...] = ("in", "not_in")

MAX_RULE_NODES = 200
MAX_RULE_DEPTH = 12
MAX_LIST_VALUES = 500
MAX_TOP_UPS = 20
MAX_PRIORITY_KEYS = 5
MAX_AMOUNT_MINOR = 10**12
MAX_TOP_UP_COUNT = 100
MAX_AGE = 150
MAX_HOUSEHOLD_SIZE = 1000
MAX_TEXT_VALUE = 200
LOCATION_CODE = re.compile(LOCATION_CODE_PATTERN.strip("^$"))

_AGE_BAND_YEARS: dict[AgeBand, tuple[int, int | None]] = {
    "0-4": (0, 4),
    "5-17": (5, 17),
    "18-34": (18, 34),
    "35-59": (35, 59),
    "60+": (60, None),
}


# --- errors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleError:
    """One problem in a rule tree, formula or priority, at `path` (`eligibility.all.2.value`)."""

    path: str
    message: str


class InvalidRules(ValueError):
    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__("; ".join(f"{e.path}: {e.message}" for e in errors[:5]))
        self.errors = errors


class Refused(Exception):
    """A business rule refuses the action; `slug` names the problem, `conflict` says whether
    it is about the current state (409) rather than the request (422)."""

    def __init__(self, slug: str, message: str, *, conflict: bool = True) -> None:
        super().__init__(message)
        self.slug = slug
        self.message = message
        self.conflict = conflict


class _Errors:
    def __init__(self) -> None:
        self.items: list[RuleError] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(RuleError(path, message))

    def raise_any(self) -> None:
        if self.items:
            raise InvalidRules(self.items)


def _at(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _object(raw: object, path: str, errors: _Errors, allowed: Iterable[str]) -> dict[str, Any]:
    """`raw` as a JSON object with only `allowed` keys; errors name the unknown ones."""
    if not isinstance(raw, dict):
        errors.add(path, "must be an object")
        return {}
    allowed_keys = set(allowed)
    for key in raw:
        if key not in allowed_keys:
            errors.add(_at(path, key), f"unknown field; expected one of {sorted(allowed_keys)}")
    return raw


# --- households, as the rules see them ------------------------------------------------------


@dataclass(frozen=True)
class Member:
    date_of_birth: date
    sex: Sex
    disability: bool = False


@dataclass(frozen=True)
class Household:
    """What eligibility and the formula read of a household (the projection's columns)."""

    household_number: str
    location_code: str
    status: HouseholdStatus
    members: tuple[Member, ...]
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    size: int | None = None

    @property
    def household_size(self) -> int:
        return self.size if self.size is not None else len(self.members)


def born_by(on: date, years: int) -> date:
    """The latest date of birth of someone at least `years` old on `on`: age_on(d, on) >= years
    exactly when d <= born_by(on, years). Born on 29 February counts from 1 March."""
    year = on.year - years
    if on.month == 2 and on.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return on.replace(year=year)


# --- member categories ----------------------------------------------------------------------


@dataclass(frozen=True)
class MemberFilter:
    """Members by age band or age range on the cycle date, sex and disability; an empty
    filter matches every member."""

    age_bands: tuple[AgeBand, ...] = ()
    min_age: int | None = None
    max_age: int | None = None
    sexes: tuple[Sex, ...] = ()
    disability: bool | None = None

    def matches(self, member: Member, on: date) -> bool:
        age = age_on(member.date_of_birth, on)
        return (
            any(_in_years(age, low, high) for low, high in self.age_ranges())
            and (not self.sexes or member.sex in self.sexes)
            and (self.disability is None or member.disability == self.disability)
        )

    def count(self, household: Household, on: date) -> int:
        return sum(1 for member in household.members if self.matches(member, on))

    def age_ranges(self) -> list[tuple[int, int | None]]:
        """The ages matched, as disjoint inclusive [low, high] years (high None: no limit)."""
        bands = sorted(_AGE_BAND_YEARS[band] for band in self.age_bands) or [(0, None)]
        merged: list[tuple[int, int | None]] = []
        for low, high in bands:
            if merged and merged[-1][1] is not None and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        floor, ceiling = self.min_age or 0, self.max_age
        clipped = [(max(low, floor), _lowest(high, ceiling)) for low, high in merged]
        return [(low, high) for low, high in clipped if high is None or low <= high]

    def birth_ranges(self, on: date) -> list[tuple[date | None, date | None]]:
        """The same as (born after, born on or before) dates on `on`; None is unbounded."""
        return [
            (
                None if high is None else born_by(on, high + 1),
                born_by(on, low) if low > 0 else None,
            )
            for low, high in self.age_ranges()
        ]

    def categories(self) -> list[int]:
        sexes = self.sexes or SEXES
        disabilities = (False, True) if self.disability is None else (self.disability,)
        return [member_category(sex, d) for sex in sexes for d in disabilities]


def _lowest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


KEY_EPOCH = date(1800, 1, 1)
KEY_SPAN = 1 << 18  # days: births from 1800 to 2517


def key_days(day: date) -> int:
    return min(max((day - KEY_EPOCH).days, 0), KEY_SPAN - 1)


def member_category(sex: Sex, disability: bool) -> int:
    return SEXES.index(sex) * 2 + int(disability)


def member_key(sex: Sex, disability: bool, date_of_birth: date) -> int:
    """Category (sex and disability) and date of birth in one integer: sorted, a household's
    keys put each category's members together in birth order."""
    return member_category(sex, disability) * KEY_SPAN + key_days(date_of_birth)


def _in_years(age: int, low: int, high: int | None) -> bool:
    """Band bounds are inclusive; the lowest band also holds anyone not yet born on the date
    (as `age_band` says), so a lower bound of 0 is no bound."""
    return (low == 0 or age >= low) and (high is None or age <= high)


MEMBER_FILTER_FIELDS = ("age_band", "min_age", "max_age", "sex", "disability")


def parse_member_filter(raw: object, path: str, errors: _Errors) -> MemberFilter:
    body = _object(raw, path, errors, MEMBER_FILTER_FIELDS)
    bands = _enum_list(body.get("age_band"), _at(path, "age_band"), errors, AGE_BANDS)
    sexes = _enum_list(body.get("sex"), _at(path, "sex"), errors, SEXES)
    min_age = _optional_int(body.get("min_age"), _at(path, "min_age"), errors, 0, MAX_AGE)
    max_age = _optional_int(body.get("max_age"), _at(path, "max_age"), errors, 0, MAX_AGE)
    if min_age is not None and max_age is not None and min_age > max_age:
        errors.add(_at(path, "max_age"), "must not be below min_age")
    disability = body.get("disability")
    if disability is not None and not isinstance(disability, bool):
        errors.add(_at(path, "disability"), "must be true or false")
        disability = None
    return MemberFilter(
        age_bands=tuple(sorted(bands, key=AGE_BANDS.index)),
        min_age=min_age,
        max_age=max_age,
        sexes=tuple(sorted(sexes)),
        disability=disability,
    )


def _enum_list(raw: object, path: str, errors: _Errors, allowed: tuple[str, ...]) -> list[Any]:
    """A value or a list of values out of `allowed`; None is no filter."""
    if raw is None:
        return []
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        errors.add(path, "must not be empty")
    for index, value in enumerate(values):
        if value not in allowed:
            where = _at(path, index) if isinstance(raw, list) else path
            errors.add(where, f"{value!r} is not one of {list(allowed)}")
    return list(dict.fromkeys(v for v in values if v in allowed))  # a list or object is no key


def _optional_int(raw: object, path: str, errors: _Errors, low: int, high: int) -> int | None:
    if raw is None:
        return None
    if not _is_int(raw) or not low <= cast(int, raw) <= high:
        errors.add(path, f"must be an integer from {low} to {high}")
        return None
    return cast(int, raw)


# --- eligibility rule tree ----------------------------------------------------------------


Scalar: TypeAlias = bool | int | float | str
Value: TypeAlias = Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True)
class Comparison:
    """`field` is `location`, `household_size`, `status`, `members` (counted with `where`) or
    `attributes.<name>` (typed by the deployment's attribute schema)."""

    field: str
    op: Operator
    value: Value
    where: MemberFilter | None = None
    attribute_type: AttributeType | None = None

    @property
    def attribute(self) -> str:
        return self.field.removeprefix(ATTRIBUTE_PREFIX)


@dataclass(frozen=True)
class AllOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


Rule: TypeAlias = AllOf | AnyOf | Not | Comparison

ATTRIBUTE_PREFIX = "attributes."
FIELDS = ("location", "household_size", "status", "members")
_OPERATORS: dict[str, tuple[Operator, ...]] = {
    "location": ("=", "!=", "in", "not_in", "within"),
    "household_size": ORDERING + MEMBERSHIP,
    "status": EQUALITY + MEMBERSHIP,
    "members": ORDERING,
    "number": (*ORDERING, *MEMBERSHIP, "present"),
    "integer": (*ORDERING, *MEMBERSHIP, "present"),
    "string": (*EQUALITY, *MEMBERSHIP, "present"),
    "boolean": (*EQUALITY, "present"),
}
COMPARISON_KEYS = ("field", "op", "value", "where")


def parse_rule(raw: object, attributes: Mapping[str, AttributeType], path: str = "") -> Rule:
    """The rule tree in `raw` (parsed JSON), or InvalidRules listing every problem by path."""
    errors = _Errors()
    counter = [0]
    rule = _parse_node(raw, attributes, path, errors, depth=1, counter=counter)
    if counter[0] > MAX_RULE_NODES:
        errors.add(path or "<root>", f"has {counter[0]} nodes, over the {MAX_RULE_NODES} allowed")
    errors.raise_any()
    return rule


def _parse_node(
    raw: object,
    attributes: Mapping[str, AttributeType],
    path: str,
    errors: _Errors,
    depth: int,
    counter: list[int],
) -> Rule:
    counter[0] += 1
    if depth > MAX_RULE_DEPTH:
        errors.add(path, f"nests deeper than {MAX_RULE_DEPTH} levels")
        return AllOf(())
    if not isinstance(raw, dict):
        errors.add(
            path,
            'must be an object: {"all": [...]}, {"any": [...]}, {"not": {...}} '
            'or a comparison {"field", "op", "value"}',
        )
        return AllOf(())
    for combinator in ("all", "any"):
        if combinator in raw:
            _object(raw, path, errors, (combinator,))
            children = raw[combinator]
            child_path = _at(path, combinator)
            if not isinstance(children, list):
                errors.add(child_path, "must be a list of rules")
                return AllOf(())
            if combinator == "any" and not children:
                errors.add(child_path, "must hold at least one rule")
            rules = tuple(
                _parse_node(child, attributes, _at(child_path, i), errors, depth + 1, counter)
                for i, child in enumerate(children)
            )
            return AllOf(rules) if combinator == "all" else AnyOf(rules)
    if "not" in raw:
        _object(raw, path, errors, ("not",))
        inner = _parse_node(raw["not"], attributes, _at(path, "not"), errors, depth + 1, counter)
        return Not(inner)
    return _parse_comparison(raw, attributes, path, errors)


def _parse_comparison(
    raw: dict[str, Any], attributes: Mapping[str, AttributeType], path: str, errors: _Errors
) -> Comparison:
    _object(raw, path, errors, COMPARISON_KEYS)
    name = raw.get("field")
    op = raw.get("op")
    value = raw.get("value")
    if not isinstance(name, str):
        errors.add(_at(path, "field"), "is required: a field name")
        return Comparison("location", "=", None)
    kind = _field_kind(name, attributes)
    if kind is None:
        known = [*FIELDS, *(ATTRIBUTE_PREFIX + a for a in sorted(attributes))]
        errors.add(_at(path, "field"), f"unknown field {name!r}; known fields: {known}")
        return Comparison(name, "=", None)
    allowed = _OPERATORS[kind]
    if op not in allowed:
        errors.add(_at(path, "op"), f"{name} takes one of the operators {list(allowed)}")
        return Comparison(name, "=", None)
    where = None
    if "where" in raw:
        if name != "members":
            errors.add(_at(path, "where"), "only the members field takes a where filter")
        else:
            where = parse_member_filter(raw["where"], _at(path, "where"), errors)
    elif name == "members":
        where = MemberFilter()
    if "value" not in raw:
        errors.add(_at(path, "value"), "is required")
        return Comparison(name, op, None)
    checked = _check_value(kind, op, value, _at(path, "value"), errors)
    attribute_type = cast(AttributeType, kind) if name.startswith(ATTRIBUTE_PREFIX) else None
    return Comparison(name, op, checked, where, attribute_type)


def _field_kind(name: str, attributes: Mapping[str, AttributeType]) -> str | None:
    if name in FIELDS:
        return name
    if name.startswith(ATTRIBUTE_PREFIX):
        return attributes.get(name.removeprefix(ATTRIBUTE_PREFIX))
    return None


def _scalar_check(kind: str) -> tuple[Callable[[object], bool], str]:
    if kind == "location":
        return _is_location, "a location code such as KE-047"
    if kind == "status":
        return (lambda v: v in HOUSEHOLD_STATUSES), f"one of {list(HOUSEHOLD_STATUSES)}"
    if kind == "household_size":
        return (lambda v: _is_int(v) and 1 <= cast(int, v) <= MAX_HOUSEHOLD_SIZE), (
            f"an integer from 1 to {MAX_HOUSEHOLD_SIZE}"
        )
    if kind == "members":
        return (lambda v: _is_int(v) and 0 <= cast(int, v) <= MAX_HOUSEHOLD_SIZE), (
            f"an integer from 0 to {MAX_HOUSEHOLD_SIZE}"
        )
    if kind == "integer":
        return _is_int, "an integer"
    if kind == "number":
        return _is_number, "a number"
    if kind == "boolean":
        return (lambda v: isinstance(v, bool)), "true or false"
    return (
        lambda v: isinstance(v, str) and 0 < len(v) <= MAX_TEXT_VALUE and v.isprintable()
    ), f"a text of 1 to {MAX_TEXT_VALUE} printable characters"


def _is_location(value: object) -> bool:
    return isinstance(value, str) and LOCATION_CODE.fullmatch(value) is not None


def _check_value(kind: str, op: Operator, value: object, path: str, errors: _Errors) -> Value:
    if op == "present":
        if not isinstance(value, bool):
            errors.add(path, "must be true (the attribute is set) or false (it is not)")
            return None
        return value
    check, expected = _scalar_check(kind)
    listed = op in MEMBERSHIP or (op == "within" and isinstance(value, list))
    if not listed:
        if not check(value):
            errors.add(path, f"must be {expected}")
            return None
        return cast(Scalar, value)
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST_VALUES:
        errors.add(path, f"must be a list of 1 to {MAX_LIST_VALUES} values, each {expected}")
        return None
    wrong = [index for index, item in enumerate(value) if not check(item)]
    for index in wrong:
        errors.add(_at(path, index), f"must be {expected}")
    return None if wrong else tuple(dict.fromkeys(cast(list[Scalar], value)))


def evaluate(rule: Rule, household: Household, on: date) -> bool:
    """Whether `household` meets `rule` on the cycle date `on` (the reference for the SQL)."""
    if isinstance(rule, AllOf):
        return all(evaluate(r, household, on) for r in rule.rules)
    if isinstance(rule, AnyOf):
        return any(evaluate(r, household, on) for r in rule.rules)
    if isinstance(rule, Not):
        return not evaluate(rule.rule, household, on)
    return _compare_python(rule, household, on)


def _compare_python(rule: Comparison, household: Household, on: date) -> bool:
    """A comparison on an attribute the household lacks (or holds with another type) is
    false, so `not` of it is true; `present` says whether it is set."""
    if rule.field == "location":
        return _location_matches(rule.op, rule.value, household.location_code)
    if rule.field == "members":
        assert rule.where is not None
        return _apply(rule.op, rule.where.count(household, on), rule.value)
    if rule.field == "household_size":
        return _apply(rule.op, household.household_size, rule.value)
    if rule.field == "status":
        return _apply(rule.op, household.status, rule.value)
    value = household.attributes.get(rule.attribute)
    if rule.op == "present":
        return (value is not None and _has_type(value, rule.attribute_type)) == rule.value
    if value is None or not _has_type(value, rule.attribute_type):
        return False
    return _apply(rule.op, value, rule.value)


def _has_type(value: object, attribute_type: AttributeType | None) -> bool:
    if attribute_type in ("integer", "number"):
        return _is_number(value)
    if attribute_type == "boolean":
        return isinstance(value, bool)
    return isinstance(value, str)


def _location_matches(op: Operator, value: Value, code: str) -> bool:
    if op == "within":
        areas = value if isinstance(value, tuple) else (value,)
        return any(covers(str(area), code) for area in areas)
    return _apply(op, code, value)


def _apply(op: Operator, left: Any, right: Value) -> bool:
    if op == "in":
        return left in cast(tuple[Scalar, ...], right)
    if op == "not_in":
        return left not in cast(tuple[Scalar, ...], right)
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: bool(a == b),
        "!=": lambda a, b: bool(a != b),
        "<": lambda a, b: bool(a < b),
        "<=": lambda a, b: bool(a <= b),
        ">": lambda a, b: bool(a > b),
        ">=": lambda a, b: bool(a >= b),
    }
    return comparisons[op](left, right)


# --- benefit formula ------------------------------------------------------------------------


@dataclass(frozen=True)
class TopUp:
    where: MemberFilter
    amount_minor: int
    max_count: int


@dataclass(frozen=True)
class Formula:
    """amount = min(cap, base + sum over top-ups of amount x min(matching members, max_count))."""

    base_amount_minor: int
    top_ups: tuple[TopUp, ...] = ()
    cap_minor: int | None = None

    def amount(self, household: Household, on: date) -> int:
        total = self.base_amount_minor + sum(
            t.amount_minor * min(t.where.count(household, on), t.max_count) for t in self.top_ups
        )
        return total if self.cap_minor is None else min(total, self.cap_minor)


FORMULA_FIELDS = ("base_amount_minor", "top_ups", "cap_minor")
TOP_UP_FIELDS = ("where", "amount_minor", "max_count")


def parse_formula(raw: object, path: str = "") -> Formula:
    errors = _Errors()
    body = _object(raw, path, errors, FORMULA_FIELDS)
    base = _amount(body.get("base_amount_minor"), _at(path, "base_amount_minor"), errors)
    cap = body.get("cap_minor")
    if cap is not None:
        cap = _amount(cap, _at(path, "cap_minor"), errors)
        if base and cap and cap < base:
            errors.add(_at(path, "cap_minor"), "must not be below base_amount_minor")
    raw_top_ups = body.get("top_ups", [])
    top_ups: list[TopUp] = []
    if not isinstance(raw_top_ups, list) or len(raw_top_ups) > MAX_TOP_UPS:
        errors.add(_at(path, "top_ups"), f"must be a list of at most {MAX_TOP_UPS} top-ups")
    else:
        for index, item in enumerate(raw_top_ups):
            top_ups.append(_parse_top_up(item, _at(_at(path, "top_ups"), index), errors))
    errors.raise_any()
    return Formula(base, tuple(top_ups), cap)


def _parse_top_up(raw: object, path: str, errors: _Errors) -> TopUp:
    body = _object(raw, path, errors, TOP_UP_FIELDS)
    where = parse_member_filter(body.get("where", {}), _at(path, "where"), errors)
    amount = _amount(body.get("amount_minor"), _at(path, "amount_minor"), errors)
    max_count = _optional_int(
        body.get("max_count"), _at(path, "max_count"), errors, 1, MAX_TOP_UP_COUNT
    )
    if max_count is None and "max_count" not in body:
        errors.add(_at(path, "max_count"), "is required")
    return TopUp(where, amount, max_count or 1)


def _amount(raw: object, path: str, errors: _Errors) -> int:
    """A positive amount in minor units: money is an integer, never a float."""
    if raw is None:
        errors.add(path, "is required: an amount in minor units")
        return 0
    if not _is_int(raw):
        errors.add(path, "must be an integer amount in minor units")
        return 0
    if not 0 < cast(int, raw) <= MAX_AMOUNT_MINOR:
        errors.add(path, f"must be a positive amount, at most {MAX_AMOUNT_MINOR}")
        return 0
    return cast(int, raw)


# --- budget priority ----------------------------------------------------------------------


@dataclass(frozen=True)
class PriorityKey:
    by: str
    order: Order
    attribute_type: AttributeType | None = None

    @property
    def attribute(self) -> str:
        return self.by.removeprefix(ATTRIBUTE_PREFIX)


PRIORITY_FIELDS = ("by", "order")


def parse_priority(
    raw: object, attributes: Mapping[str, AttributeType], path: str = ""
) -> tuple[PriorityKey, ...]:
    """Who keeps their place first when the budget is short: keys in order, then the household
    number (always last, so the order is total and the cut deterministic)."""
    errors = _Errors()
    if not isinstance(raw, list) or len(raw) > MAX_PRIORITY_KEYS:
        errors.add(path, f"must be a list of at most {MAX_PRIORITY_KEYS} keys")
        errors.raise_any()
    keys: list[PriorityKey] = []
    for index, item in enumerate(cast(list[object], raw)):
        item_path = _at(path, index)
        body = _object(item, item_path, errors, PRIORITY_FIELDS)
        by = body.get("by")
        order = body.get("order", "asc")
        kind = _field_kind(by, attributes) if isinstance(by, str) else None
        if kind not in ("household_size", "integer", "number", "string", "boolean"):
            sortable = ["household_size", *(ATTRIBUTE_PREFIX + a for a in sorted(attributes))]
            errors.add(_at(item_path, "by"), f"must be one of {sortable}")
            continue
        if order not in ("asc", "desc"):
            errors.add(_at(item_path, "order"), "must be asc or desc")
            continue
        attribute_type = kind if kind != "household_size" else None
        keys.append(PriorityKey(cast(str, by), order, cast(AttributeType | None, attribute_type)))
    errors.raise_any()
    return tuple(keys)


def priority_sort_key(
    priority: Sequence[PriorityKey], household: Household
) -> tuple[tuple[int, Any], ...]:
    """The Python twin of `priority_sql`: missing values last in either order."""
    parts: list[tuple[int, Any]] = []
    for key in priority:
        if key.by == "household_size":
            value: Any = household.household_size
        else:
            value = household.attributes.get(key.attribute)
            if value is not None and not _has_type(value, key.attribute_type):
                value = None
        if value is None:
            parts.append((1, 0))
        elif key.order == "desc":
            parts.append((0, _Descending(value)))
        else:
            parts.append((0, value))
    parts.append((0, household.household_number))
    return tuple(parts)


@dataclass(frozen=True)
class _Descending:
    value: Any

    def __lt__(self, other: _Descending) -> bool:
        return bool(self.value > other.value)


# --- a programme's rules: one version ---------------------------------------------------


@dataclass(frozen=True)
class ProgrammeRules:
    eligibility: Rule
    formula: Formula
    priority: tuple[PriorityKey, ...] = ()

    def member_filters(self) -> list[MemberFilter]:
        """Every member category the rules and formula count, once each."""
        found = list(_rule_filters(self.eligibility))
        found.extend(t.where for t in self.formula.top_ups)
        return list(dict.fromkeys(found))


def _rule_filters(rule: Rule) -> Iterable[MemberFilter]:
    if isinstance(rule, AllOf | AnyOf):
        for child in rule.rules:
            yield from _rule_filters(child)
    elif isinstance(rule, Not):
        yield from _rule_filters(rule.rule)
    elif rule.where is not None:
        yield rule.where


def parse_programme_rules(
    eligibility: object,
    formula: object,
    priority: object,
    attributes: Mapping[str, AttributeType],
) -> ProgrammeRules:
    """All three parts, with every error of each (paths start with the part's name)."""
    errors: list[RuleError] = []
    parsed: dict[str, Any] = {}
    parsers: dict[str, Callable[[], Any]] = {
        "eligibility": lambda: parse_rule(eligibility, attributes, "eligibility"),
        "formula": lambda: parse_formula(formula, "formula"),
        "budget_priority": lambda: parse_priority(priority, attributes, "budget_priority"),
    }
    for name, parse in parsers.items():
        try:
            parsed[name] = parse()
        except InvalidRules as invalid:
            errors.extend(invalid.errors)
    if errors:
        raise InvalidRules(errors)
    return ProgrammeRules(parsed["eligibility"], parsed["formula"], parsed["budget_priority"])


# --- compilation to SQL -------------------------------------------------------------------


@dataclass(frozen=True)
class HouseholdColumns:
    """The projection's columns the compiled rules read (any SQLAlchemy column expressions)."""

    household_number: ColumnElement[Any]
    location_code: ColumnElement[Any]
    location_ancestors: Any  # text[]: the code and every area above it (`ancestors_or_self`)
    status: ColumnElement[Any]
    size: ColumnElement[Any]
    attributes: Any  # a JSONB column: indexable, `has_key`


@dataclass(frozen=True)
class MemberArrays:
    """A household's members as two sorted arrays: dates of birth (`date[]`) and category keys
    (`int[]`, see `member_key`). `width_bucket(x, sorted)` counts the elements <= x by binary
    search, so counting members in a range of births costs two calls and no unnest."""

    birth_dates: Any
    keys: Any


MemberCounts = Mapping[MemberFilter, ColumnElement[Any]]


def member_count_sql(member_filter: MemberFilter, m: MemberArrays, on: date) -> ColumnElement[int]:
    """How many of the household's members `member_filter` matches on `on`."""
    ranges = member_filter.birth_ranges(on)
    if not member_filter.sexes and member_filter.disability is None:
        terms = [_count_between(m.birth_dates, after, upto) for after, upto in ranges]
    else:
        terms = [
            _count_keys(m.keys, category, after, upto)
            for category in member_filter.categories()
            for after, upto in ranges
        ]
    return cast(ColumnElement[int], sum(terms[1:], terms[0]) if terms else literal(0))


def _count_between(sorted_dates: Any, after: date | None, upto: date | None) -> Any:
    """Elements in (after, upto] of a sorted date[]; None is unbounded."""
    below = (
        func.coalesce(func.cardinality(sorted_dates), 0)
        if upto is None
        else (func.width_bucket(literal(upto, Date()), sorted_dates))
    )
    if after is None:
        return below
    return below - func.width_bucket(literal(after, Date()), sorted_dates)


def _count_keys(sorted_keys: Any, category: int, after: date | None, upto: date | None) -> Any:
    """Members of `category` born in (after, upto], counted on the sorted key array."""
    high = category * KEY_SPAN + (KEY_SPAN - 1 if upto is None else key_days(upto))
    low = category * KEY_SPAN + (-1 if after is None else key_days(after))
    return func.width_bucket(literal(high, Integer()), sorted_keys) - func.width_bucket(
        literal(low, Integer()), sorted_keys
    )


def rule_sql(rule: Rule, h: HouseholdColumns, counts: MemberCounts) -> ColumnElement[bool]:
    """`rule` as a boolean expression; each comparison is two-valued (NULL counts as false),
    so `not` means what it says for a household without an attribute."""
    if isinstance(rule, AllOf):
        return and_(true(), *(rule_sql(r, h, counts) for r in rule.rules))
    if isinstance(rule, AnyOf):
        return or_(false(), *(rule_sql(r, h, counts) for r in rule.rules))
    if isinstance(rule, Not):
        return not_(rule_sql(rule.rule, h, counts))
    return func.coalesce(_comparison_sql(rule, h, counts), false())


def _comparison_sql(rule: Comparison, h: HouseholdColumns, counts: MemberCounts) -> Any:
    if rule.field == "location":
        if rule.op == "within":
            areas = rule.value if isinstance(rule.value, tuple) else (rule.value,)
            return _within_sql(h.location_ancestors, [str(area) for area in areas])
        return _operator_sql(rule.op, h.location_code, rule.value)
    if rule.field == "members":
        assert rule.where is not None
        return _operator_sql(rule.op, counts[rule.where], rule.value)
    if rule.field == "household_size":
        return _operator_sql(rule.op, h.size, rule.value)
    if rule.field == "status":
        return _operator_sql(rule.op, h.status, rule.value)
    if rule.op == "present":
        is_set = _typed_attribute_sql(h.attributes, rule.attribute, rule.attribute_type).is_not(
            None
        )
        return is_set if rule.value else not_(is_set)
    value = _typed_attribute_sql(h.attributes, rule.attribute, rule.attribute_type)
    return _operator_sql(rule.op, value, rule.value)


def _within_sql(ancestors: Any, areas: Sequence[str]) -> ColumnElement[bool]:
    """Within one of `areas`: the household's ancestor with as many parts as an area is that
    area. `ancestors` lists the code's ancestors outermost first (`KE`, `KE-047`,
    `KE-047-0101`), so areas of d parts are compared with element d only: one IN list per
    depth rather than every ancestor against every area."""
    by_depth: dict[int, list[str]] = {}
    for area in areas:
        by_depth.setdefault(len(ancestors_or_self(area)), []).append(area)
    return or_(*(ancestors[depth].in_(sorted(found)) for depth, found in sorted(by_depth.items())))


_JSON_TYPES: dict[AttributeType, str] = {
    "integer": "number",
    "number": "number",
    "boolean": "boolean",
    "string": "string",
}
_SQL_TYPES: dict[AttributeType, Any] = {
    "integer": Numeric(),
    "number": Numeric(),
    "boolean": Boolean(),
}


def _typed_attribute_sql(
    attributes: Any, name: str, attribute_type: AttributeType | None
) -> ColumnElement[Any]:
    """The attribute cast to its type, NULL when missing or of another JSON type (the name
    is a bound parameter, like every value)."""
    assert attribute_type is not None
    element = attributes[literal(name, String())]
    value = (
        attributes[literal(name, String())].astext
        if attribute_type == "string"
        else element.cast(_SQL_TYPES[attribute_type])  # jsonb to numeric or boolean: no text
    )
    return case((func.jsonb_typeof(element) == _JSON_TYPES[attribute_type], value), else_=None)


def _operator_sql(op: Operator, column: Any, value: Value) -> ColumnElement[bool]:
    if op == "in":
        return cast(ColumnElement[bool], column.in_(list(cast(tuple[Scalar, ...], value))))
    if op == "not_in":
        return cast(ColumnElement[bool], column.not_in(list(cast(tuple[Scalar, ...], value))))
    operators: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return operators[op](column, value)


def amount_sql(formula: Formula, counts: MemberCounts) -> ColumnElement[int]:
    """The formula as a bigint expression with bound parameters."""
    total: ColumnElement[Any] = literal(formula.base_amount_minor, BigInteger())
    for top_up in formula.top_ups:
        counted = func.least(counts[top_up.where], literal(top_up.max_count, BigInteger()))
        total = total + literal(top_up.amount_minor, BigInteger()) * counted
    if formula.cap_minor is not None:
        total = func.least(total, literal(formula.cap_minor, BigInteger()))
    return cast(ColumnElement[int], total)


@dataclass(frozen=True)
class RankingColumns:
    """What a budget priority orders by."""

    size: ColumnElement[Any]
    attributes: Any  # a JSONB column


def priority_keys(priority: Sequence[PriorityKey], h: RankingColumns) -> list[Any]:
    """The value of each priority key, in order (NULL when a household has none). Numbers are
    ordered as double precision, which sorts much faster than numeric (and as Python floats
    do)."""
    return [
        h.size if key.by == "household_size" else _sort_value(h.attributes, key) for key in priority
    ]


def _sort_value(attributes: Any, key: PriorityKey) -> Any:
    value = _typed_attribute_sql(attributes, key.attribute, key.attribute_type)
    return value.cast(Double()) if key.attribute_type in ("integer", "number") else value


def priority_order(
    priority: Sequence[PriorityKey], keys: Sequence[Any], household_number: Any
) -> list[Any]:
    """ORDER BY terms over the key values: each in its order with missing values last, then
    the household number, so the order is total and the budget cut deterministic."""
    terms = [
        (value.asc() if key.order == "asc" else value.desc()).nulls_last()
        for key, value in zip(priority, keys, strict=True)
    ]
    return [*terms, household_number.asc()]


# --- exclusions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentState:
    """What decides whether an eligible household can be put on a payroll."""

    status: HouseholdStatus
    duplicate_review_open: bool
    payable: bool
    not_payable_reasons: tuple[str, ...]
    has_recipient: bool
    provider_id: Any | None
    mechanism: str | None
    pay_point_id: Any | None


@dataclass(frozen=True)
class ProviderState:
    status: str
    currencies: tuple[str, ...]
    mechanisms: tuple[str, ...]
    active_pay_points: frozenset[Any]


EXCLUSION_ORDER: tuple[ExclusionReason, ...] = get_args(ExclusionReason)
CASH = "cash_pay_point"


def exclusion_reason(
    state: PaymentState, provider: ProviderState | None, currency: str
) -> ExclusionReason | None:
    """The first reason that leaves an eligible household out (`over_budget` is decided after,
    over all of them). The registry's `payable` is trusted, and the provider is checked again
    against this service's own projection, which may be fresher."""
    if state.status in ("suspended", "exited"):
        return "not_active"
    if state.status == "under_review" or state.duplicate_review_open:
        return "under_review"
    if (provider is not None and provider.status == "suspended") or (
        "provider_suspended" in state.not_payable_reasons
    ):
        return "provider_suspended"
    if (
        not state.payable
        or not state.has_recipient
        or state.provider_id is None
        or provider is None
        or state.mechanism not in provider.mechanisms
        or (state.mechanism == CASH and state.pay_point_id not in provider.active_pay_points)
    ):
        return "no_payable_preference"
    if currency not in provider.currencies:
        return "provider_currency"
    return None


@dataclass(frozen=True)
class PaymentColumns:
    status: ColumnElement[Any]
    duplicate_review_open: ColumnElement[Any]
    payable: ColumnElement[Any]
    not_payable_reasons: Any  # varchar[]
    recipient_member_id: ColumnElement[Any]
    provider_id: ColumnElement[Any]
    mechanism: ColumnElement[Any]
    pay_point_id: ColumnElement[Any]


@dataclass(frozen=True)
class ProviderColumns:
    """Columns of the provider projection (outer-joined: NULL when unknown) and of the
    household's pay point (outer-joined on pay point and provider, active ones only)."""

    provider_id: ColumnElement[Any]
    status: ColumnElement[Any]
    currencies: Any  # varchar[]
    mechanisms: Any  # varchar[]
    active_pay_point_id: ColumnElement[Any]


def exclusion_sql(h: PaymentColumns, p: ProviderColumns, currency: str) -> ColumnElement[Any]:
    """`exclusion_reason` as a CASE expression (NULL: on the payroll, budget permitting)."""
    return case(
        (h.status.in_(["suspended", "exited"]), "not_active"),
        (or_(h.status == "under_review", h.duplicate_review_open), "under_review"),
        (
            or_(
                p.status == "suspended",
                and_(
                    not_(h.payable),
                    literal("provider_suspended", String()) == any_(h.not_payable_reasons),
                ),
            ),
            "provider_suspended",
        ),
        (
            or_(
                not_(h.payable),
                h.recipient_member_id.is_(None),
                h.provider_id.is_(None),
                p.provider_id.is_(None),
                func.coalesce(h.mechanism == any_(p.mechanisms), false()).is_(false()),
                and_(h.mechanism == CASH, p.active_pay_point_id.is_(None)),
            ),
            "no_payable_preference",
        ),
        (
            func.coalesce(literal(currency, String()) == any_(p.currencies), false()).is_(false()),
            "provider_currency",
        ),
        else_=None,
    )


# --- budget -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An eligible household with its amount and its exclusion (None: payable)."""

    household: Household
    amount_minor: int
    excluded: ExclusionReason | None


def apply_budget(
    candidates: Sequence[Candidate], priority: Sequence[PriorityKey], budget_minor: int
) -> list[Candidate]:
    """In priority order, payable households keep their place while the running total stays
    within the budget; the first that does not fit and every one after it are over_budget
    (the Python twin of the window the generation runs)."""
    ordered = sorted(candidates, key=lambda c: priority_sort_key(priority, c.household))
    running = 0
    result = []
    for candidate in ordered:
        if candidate.excluded is None:
            running += candidate.amount_minor
            if running > budget_minor:
                candidate = replace(candidate, excluded="over_budget")
        result.append(candidate)
    return result


@dataclass(frozen=True)
class LocationTally:
    """Eligible households of one location left out for one reason (None: paid)."""

    location_code: str
    reason: str | None
    households: int
    amount_minor: int


@dataclass(frozen=True)
class Summary:
    eligible: int
    paid_amount_minor: int
    exclusions: dict[str, int]
    locations: list[dict[str, Any]]


def summarise(tallies: Iterable[LocationTally], carried: Mapping[str, tuple[int, int]]) -> Summary:
    """Per location: eligible, on the payroll (carry-overs included) with their amount, and
    the eligible left out by reason; and the same over the whole payroll."""
    exclusions: dict[str, int] = dict.fromkeys(EXCLUSION_ORDER, 0)
    by_location: dict[str, dict[str, Any]] = {}
    paid_amount = 0
    for tally in tallies:
        row = by_location.setdefault(tally.location_code, _location_row(tally.location_code))
        row["eligible"] += tally.households
        if tally.reason is None:
            row["on_payroll"] += tally.households
            row["amount_minor"] += tally.amount_minor
            paid_amount += tally.amount_minor
        else:
            row["exclusions"][tally.reason] = (
                row["exclusions"].get(tally.reason, 0) + tally.households
            )
            exclusions[tally.reason] += tally.households
    for code, (count, amount) in carried.items():
        row = by_location.setdefault(code, _location_row(code))
        row["on_payroll"] += count
        row["amount_minor"] += amount
    eligible = sum(row["eligible"] for row in by_location.values())
    return Summary(
        eligible,
        paid_amount,
        exclusions,
        sorted(by_location.values(), key=lambda r: r["location_code"]),
    )


def _location_row(code: str) -> dict[str, Any]:
    return {
        "location_code": code,
        "eligible": 0,
        "on_payroll": 0,
        "amount_minor": 0,
        "exclusions": {},
    }


# --- simulation -----------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedGroup:
    """Households of one location alike under both versions: the reason each leaves them out
    (None: it pays them; `not_eligible`: they do not meet its rules), and their amounts."""

    location_code: str
    current_reason: str | None
    candidate_reason: str | None
    current_eligible: bool
    candidate_eligible: bool
    households: int
    current_amount_minor: int
    candidate_amount_minor: int


@dataclass
class VersionTally:
    eligible: int = 0
    on_payroll: int = 0
    total_amount_minor: int = 0
    exclusions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EXCLUSION_ORDER, 0))

    def add(self, reason: str | None, eligible: bool, households: int, amount: int) -> None:
        self.eligible += households if eligible else 0
        if reason is None:
            self.on_payroll += households
            self.total_amount_minor += amount
        elif reason != "not_eligible":
            self.exclusions[reason] = self.exclusions.get(reason, 0) + households


@dataclass
class LocationDelta:
    location_code: str
    eligible: int = 0
    on_payroll: int = 0
    amount_minor: int = 0
    current_on_payroll: int = 0
    current_amount_minor: int = 0


@dataclass
class VersionComparison:
    current: VersionTally = field(default_factory=VersionTally)
    candidate: VersionTally = field(default_factory=VersionTally)
    newly_included: int = 0
    newly_excluded: int = 0
    locations: dict[str, LocationDelta] = field(default_factory=dict)

    @property
    def cost_delta_minor(self) -> int:
        return self.candidate.total_amount_minor - self.current.total_amount_minor


def compare_versions(groups: Iterable[SimulatedGroup]) -> VersionComparison:
    """Each version's tally, per location, and the households the candidate pays that the
    current version does not (newly included) and the reverse (newly excluded)."""
    comparison = VersionComparison()
    for g in groups:
        comparison.current.add(
            g.current_reason, g.current_eligible, g.households, g.current_amount_minor
        )
        comparison.candidate.add(
            g.candidate_reason, g.candidate_eligible, g.households, g.candidate_amount_minor
        )
        place = comparison.locations.setdefault(g.location_code, LocationDelta(g.location_code))
        place.eligible += g.households if g.candidate_eligible else 0
        paid_now, paid_before = g.candidate_reason is None, g.current_reason is None
        if paid_now:
            place.on_payroll += g.households
            place.amount_minor += g.candidate_amount_minor
        if paid_before:
            place.current_on_payroll += g.households
            place.current_amount_minor += g.current_amount_minor
        comparison.newly_included += g.households if paid_now and not paid_before else 0
        comparison.newly_excluded += g.households if paid_before and not paid_now else 0
    return comparison


def payable_cost(tallies: Iterable[LocationTally]) -> int:
    return sum(t.amount_minor for t in tallies if t.reason is None)


def with_over_budget(
    tallies: Iterable[LocationTally], past_budget: Iterable[LocationTally]
) -> list[LocationTally]:
    """The tallies once the households past the budget are moved from payable (reason None)
    to over_budget, location by location."""
    moved = {t.location_code: t for t in past_budget}
    result = []
    for tally in tallies:
        left = moved.get(tally.location_code)
        if tally.reason is None and left is not None:
            tally = replace(
                tally,
                households=tally.households - left.households,
                amount_minor=tally.amount_minor - left.amount_minor,
            )
        if tally.households:
            result.append(tally)
    return result + list(moved.values())


def page_ranges(pages: int, chunks: int) -> list[tuple[int, int | None]]:
    """`chunks` consecutive ranges [first, after) of a table's pages; the last one is open
    (None) so that nothing stored past the size measured is missed."""
    step = max(1, -(-pages // max(1, chunks)))
    starts = list(range(0, max(pages, 1), step))
    return [(first, None if first == starts[-1] else first + step) for first in starts]


def check_budget(total_minor: int, budget_minor: int) -> None:
    if total_minor > budget_minor:
        raise Refused(
            "over-budget",
            f"the payroll's total {total_minor} is over the cycle budget {budget_minor}",
        )


# --- cycles -------------------------------------------------------------------------------


_UNIT_MONTHS = {"monthly": 1, "quarterly": 3}
MAX_YEARS = 50


@dataclass(frozen=True)
class Frequency:
    unit: FrequencyUnit
    payment_day: int
    payment_window_days: int
    every_n_months: int = 1

    @property
    def months(self) -> int:
        return _UNIT_MONTHS.get(self.unit, self.every_n_months)


@dataclass(frozen=True)
class CycleDates:
    sequence: int
    period_start: date
    period_end: date
    payment_date: date
    window_end: date

    def generate_on(self, lead_days: int) -> date:
        return self.payment_date - timedelta(days=lead_days)


def _first_of_month(day: date, months_later: int) -> date:
    index = day.year * 12 + day.month - 1 + months_later
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Schedule:
    """A programme's cycles: periods of `frequency.months` calendar months from the month it
    starts, each paid from its payment day for its payment window. A cycle belongs to the
    programme when its payment date falls within the programme's start and end dates;
    sequence 1 is the first such cycle."""

    start_date: date
    end_date: date | None
    frequency: Frequency

    def _nth(self, index: int) -> CycleDates:
        months = self.frequency.months
        period_start = _first_of_month(self.start_date, index * months)
        period_end = _first_of_month(self.start_date, (index + 1) * months) - timedelta(days=1)
        payment_date = period_start.replace(day=self.frequency.payment_day)
        window_end = payment_date + timedelta(days=self.frequency.payment_window_days - 1)
        return CycleDates(0, period_start, period_end, payment_date, window_end)

    def _first_index(self) -> int:
        return 0 if self._nth(0).payment_date >= self.start_date else 1

    def cycle(self, sequence: int) -> CycleDates | None:
        """Cycle `sequence`, or None when it falls outside the programme's dates."""
        if sequence < 1:
            return None
        dates = self._nth(self._first_index() + sequence - 1)
        if self.end_date is not None and dates.payment_date > self.end_date:
            return None
        return replace(dates, sequence=sequence)

    def cycles_until(self, last_payment_date: date) -> list[CycleDates]:
        """Every cycle paid on or before `last_payment_date`, in order."""
        found = []
        sequence = 1
        while (dates := self.cycle(sequence)) is not None:
            if dates.payment_date > last_payment_date:
                break
            found.append(dates)
            sequence += 1
        return found

    def check(self) -> None:
        if self.end_date is not None and self.end_date < self.start_date:
            raise Refused("invalid-dates", "end_date is before start_date", conflict=False)
        if self.end_date is not None and self.end_date.year - self.start_date.year > MAX_YEARS:
            raise Refused(
                "invalid-dates", f"a programme runs {MAX_YEARS} years at most", conflict=False
            )
        if self.cycle(1) is None:
            raise Refused(
                "invalid-dates",
                "no payment date of the frequency falls between start_date and end_date",
                conflict=False,
            )


# --- programme and payroll states ----------------------------------------------------------


PROGRAMME_TRANSITIONS: dict[ProgrammeStatus, frozenset[ProgrammeStatus]] = {
    "draft": frozenset({"active", "closed"}),
    "active": frozenset({"suspended", "closed"}),
    "suspended": frozenset({"active", "closed"}),
    "closed": frozenset(),
}


def check_programme_transition(current: ProgrammeStatus, target: ProgrammeStatus) -> None:
    if target not in PROGRAMME_TRANSITIONS[current]:
        raise Refused("invalid-status-change", f"a {current} programme cannot become {target}")


def check_can_generate(status: ProgrammeStatus, cycle: CycleDates | None) -> CycleDates:
    """Only an active programme generates, and only for one of its cycles."""
    if status != "active":
        raise Refused("programme-not-active", f"the programme is {status}: nothing is generated")
    if cycle is None:
        raise Refused(
            "cycle-outside-programme",
            "the cycle falls outside the programme's start and end dates",
            conflict=False,
        )
    return cycle


class PayrollStatus(StrEnum):
    GENERATING = "GENERATING"
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


PAYROLL_TRANSITIONS: dict[PayrollStatus, frozenset[PayrollStatus]] = {
    PayrollStatus.GENERATING: frozenset({PayrollStatus.PENDING_APPROVAL, PayrollStatus.FAILED}),
    PayrollStatus.PENDING_APPROVAL: frozenset({PayrollStatus.APPROVED, PayrollStatus.REJECTED}),
    PayrollStatus.FAILED: frozenset({PayrollStatus.GENERATING}),
    PayrollStatus.APPROVED: frozenset(),
    PayrollStatus.REJECTED: frozenset(),
}


def check_payroll_transition(current: PayrollStatus, target: PayrollStatus) -> None:
    if target not in PAYROLL_TRANSITIONS[current]:
        raise Refused(
            f"payroll-{current.lower().replace('_', '-')}",
            f"a payroll that is {current} cannot become {target}",
        )


SYSTEM_MAKER = "system:scheduler"


def check_checker(approver: str, makers: Iterable[str | None]) -> None:
    """Maker-checker: whoever generated, triggered or last changed a payroll may not decide
    it. A scheduled payroll's maker is the system, so any approver may decide it."""
    if approver in {m for m in makers if m}:
        raise Refused(
            "maker-checker",
            "you generated or last changed this payroll: another approver must decide it",
        )


# --- PayrollApproved chunks ---------------------------------------------------------------


def lines_per_chunk(widest_line: int, max_lines: int, room: int) -> int:
    """How many lines each chunk carries when none is wider than `widest_line` bytes and a
    chunk has `room` bytes for its lines (a comma between two): every chunk then fits, and a
    consumer can tell the chunk of a line from its position."""
    if widest_line > room:
        raise ValueError(f"a line takes {widest_line} bytes, over the {room} a chunk has")
    return max(1, min(max_lines, (room + 1) // (widest_line + 1)))


# --- locations in events ------------------------------------------------------------------


def parent_location(code: str) -> str:
    """`KE-047-0101` -> `KE-047`; a top-level code is its own parent."""
    cut = max(code.rfind("-"), code.rfind("."))
    return code[:cut] if cut > 0 else code


def roll_up_locations(
    counts: Mapping[str, tuple[int, int, int]],
) -> dict[str, tuple[int, int, int]]:
    """Per-location (eligible, on_payroll, amount) one level up the hierarchy, to keep an event
    small when a payroll spans very many locations."""
    rolled: dict[str, tuple[int, int, int]] = {}
    for code, (eligible, paid, amount) in counts.items():
        parent = parent_location(code)
        e, p, a = rolled.get(parent, (0, 0, 0))
        rolled[parent] = (e + eligible, p + paid, a + amount)
    return rolled


def attribute_schema(raw: Mapping[str, str]) -> dict[str, AttributeType]:
    """The configured attribute types, checked (settings validate them at start)."""
    allowed = get_args(AttributeType)
    for name, kind in raw.items():
        if kind not in allowed:
            raise ValueError(f"attribute {name}: type {kind!r} is not one of {list(allowed)}")
    return {name: cast(AttributeType, kind) for name, kind in raw.items()}
