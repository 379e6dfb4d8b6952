"""Reading import records into cleaned households: a CSV household (its rows, one per member)
or a FHIR Group with the resources it references. Pure: no session. Every problem names the
record and the field in the source's terms (`line 7: date_of_birth`, `Patient/p1.birthDate`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from amana_contracts.provider import Mechanism
from registry import domain
from registry.cleaning import (
    AccountDraft,
    CleaningRules,
    HouseholdDraft,
    IdentifierDraft,
    MemberDraft,
    Refusal,
    clean_account,
    clean_household,
)
from registry.fhir import (
    RELATIONSHIPS,
    SCHEMES,
    SEXES,
    MappedHousehold,
    Resolver,
    household_number_of,
    label,
    read_household,
    validation_refusals,
)
from registry.generate import CSV_HOUSEHOLD_COLUMNS, CSV_MEMBER_COLUMNS, CSV_PAYMENT_COLUMNS
from registry.reference import attribute_types

MECHANISMS = frozenset(Mechanism.__args__)  # type: ignore[attr-defined]
TRUE = frozenset(("true", "1", "yes"))
FALSE = frozenset(("false", "0", "no", ""))
_BAD_FOR_STORAGE = re.compile("[\x00\ud800-\udfff]")  # what PostgreSQL's jsonb cannot hold


@dataclass(frozen=True)
class PreferenceDraft:
    """A payment preference as read from an import, checked against the provider projection
    before it is written."""

    provider_id: UUID
    mechanism: str
    currency: str
    pay_point_id: UUID | None
    account: AccountDraft | None


@dataclass
class Record:
    """One record of an import, read and cleaned: `draft` is None when it is refused.
    `label` names the record, `identifier_fields[m][i]` its member m's identifier i, in the
    source's terms (`Patient/p1.identifier[0]`, `line 7: national_id`)."""

    position: int
    line: int
    source_id: str | None
    keys: list[str] = field(default_factory=list)
    household_number: str | None = None
    draft: HouseholdDraft | None = None
    preference: PreferenceDraft | None = None
    claims: list[str] = field(default_factory=list)  # FHIR references this Group took
    changes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    label: str = "record"
    identifier_fields: list[list[str]] = field(default_factory=list)

    def refuse(self, field_name: str, code: str, message: str, **extra: Any) -> None:
        self.errors.append({"field": field_name, "code": code, "message": message, **extra})
        self.draft = None

    @property
    def accepted(self) -> bool:
        return self.draft is not None and not self.errors


def storage_problem(value: Any, path: str = "") -> str | None:
    """The path of the first string holding NUL or a lone surrogate (which the staging table
    cannot store), or None."""
    if isinstance(value, str):
        return path or "value" if _BAD_FOR_STORAGE.search(value) else None
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = storage_problem(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def _clean(
    record: Record,
    names: MappedHousehold,
    draft: HouseholdDraft,
    rules: CleaningRules,
    today: date,
) -> None:
    """Cleans the draft: its changes join the report, its refusals refuse the record, each
    named in the source's terms."""
    cleaned = clean_household(draft, rules, today)
    record.changes.extend(
        {"field": names.fhir_field(c.field), "before": c.before, "after": c.after, "rule": c.rule}
        for c in cleaned.report.changes
    )
    for refusal in cleaned.report.refusals:
        record.refuse(names.fhir_field(refusal.field), refusal.code, refusal.message)
    if not record.errors and cleaned.value is not None:
        record.draft = cleaned.value
        record.identifier_fields = [
            [
                names.fhir_field(f"members.{index}.identifiers.{position}")
                for position in range(len(member.identifiers))
            ]
            for index, member in enumerate(cleaned.value.members)
        ]


def _mapping_report(record: Record, mapped: MappedHousehold) -> None:
    record.changes.extend(
        {"field": c.field, "before": c.before, "after": c.after, "rule": c.rule}
        for c in mapped.changes
    )
    for refusal in mapped.refusals:
        record.refuse(refusal.field, refusal.code, refusal.message)


# --- FHIR -----------------------------------------------------------------------------------


def fhir_record(
    position: int,
    line: int,
    group: Mapping[str, Any],
    resolve: Resolver,
    resources: Sequence[Mapping[str, Any]],
    rules: CleaningRules,
    today: date,
) -> Record:
    """A Group and the resources it references (`resources`, each validated here with
    fhir.resources) read and cleaned."""
    record = Record(position, line, str(group.get("id")) if group.get("id") else None)
    record.label = label(group)
    refusals: list[Refusal] = validation_refusals(group)
    for resource in resources:
        refusals.extend(validation_refusals(resource))
    for refusal in refusals:
        record.refuse(refusal.field, refusal.code, refusal.message)
    try:
        mapped = read_household(group, resolve, rules.locations)
    except (AttributeError, TypeError, ValueError):
        if not refusals:
            raise
        return record  # a shape fhir.resources refused already (`member: [1]`): reported
    record.keys = mapped.keys
    record.household_number = household_number_of(group)
    record.claims = [*mapped.members, *mapped.related]
    for reference in mapped.related:
        related = resolve(reference)
        for refusal in validation_refusals(related) if related is not None else []:
            record.refuse(refusal.field, refusal.code, refusal.message)
    _mapping_report(record, mapped)
    if mapped.draft is not None and not record.errors:
        _clean(record, mapped, mapped.draft, rules, today)
    return record


# --- CSV ------------------------------------------------------------------------------------


def csv_record(
    position: int,
    lines: Sequence[int],
    rows: Sequence[Mapping[str, str]],
    rules: CleaningRules,
    today: date,
    default_currency: str,
) -> Record:
    """A household's CSV rows (one per member, the household's columns on the first) read
    and cleaned; the payment preference's shape is checked here, the provider later."""
    code = rows[0].get("household_code", "")
    record = Record(position, lines[0], code, keys=[f"code:{code}"], label=f"household {code}")
    names = MappedHousehold(record.label)
    first = rows[0]
    for column in (*CSV_HOUSEHOLD_COLUMNS, "payment"):
        names.field_names[{"household_phone": "phone"}.get(column, column)] = (
            f"line {lines[0]}: {column}"
        )
    names.field_names["eligibility_attributes"] = f"line {lines[0]}: attr"
    names.field_names["members"] = f"household {code}"
    members = [
        _csv_member(record, names, index, line, row)
        for index, (line, row) in enumerate(zip(lines, rows, strict=True))
    ]
    latitude = _csv_float(record, first, "latitude", lines[0])
    longitude = _csv_float(record, first, "longitude", lines[0])
    if (latitude is None) != (longitude is None):
        record.refuse(
            f"line {lines[0]}: latitude", "gps-pair", "latitude and longitude go together"
        )
    attributes = _csv_attributes(record, first, lines[0], rules)
    record.preference = _csv_preference(record, first, lines[0], default_currency, rules)
    if record.errors or any(member is None for member in members):
        return record
    draft = HouseholdDraft(
        location_code=first.get("location_code", ""),
        members=tuple(member for member in members if member is not None),
        address=first.get("address") or None,
        phone=first.get("household_phone") or None,
        latitude=latitude,
        longitude=longitude,
        eligibility_attributes=attributes,
    )
    _clean(record, names, draft, rules, today)
    return record


def _csv_member(
    record: Record, names: MappedHousehold, index: int, line: int, row: Mapping[str, str]
) -> MemberDraft | None:
    prefix = f"members.{index}"
    names.field_names[prefix] = f"line {line}"
    for column in CSV_MEMBER_COLUMNS:
        target = {"member_phone": "phone"}.get(column, column)
        names.field_names[f"{prefix}.{target}"] = f"line {line}: {column}"
    where = f"line {line}"
    sex = row.get("sex", "").strip().lower()
    relationship = row.get("relationship", "").strip().lower()
    born = _csv_date(record, row, line)
    disability = _csv_bool(record, row, "disability", line)
    recipient = _csv_bool(record, row, "is_primary_recipient", line)
    if sex not in SEXES:
        record.refuse(f"{where}: sex", "invalid-sex", f"one of {', '.join(sorted(SEXES))}")
    if relationship not in RELATIONSHIPS:
        record.refuse(
            f"{where}: relationship",
            "invalid-relationship",
            f"one of {', '.join(sorted(RELATIONSHIPS))}",
        )
    identifiers: list[IdentifierDraft] = []
    for scheme in sorted(SCHEMES - {"other"}):
        value = row.get(scheme, "")
        if value:
            names.field_names[f"{prefix}.identifiers.{len(identifiers)}"] = f"{where}: {scheme}"
            identifiers.append(IdentifierDraft(scheme, value))
    if born is None or disability is None or recipient is None or record.errors:
        return None
    return MemberDraft(
        given_name=row.get("given_name", ""),
        family_name=row.get("family_name", ""),
        sex=sex,
        date_of_birth=born,
        relationship=relationship,
        disability=disability,
        phone=row.get("member_phone") or None,
        is_primary_recipient=recipient,
        identifiers=tuple(identifiers),
    )


def _csv_date(record: Record, row: Mapping[str, str], line: int) -> date | None:
    try:
        return date.fromisoformat(row.get("date_of_birth", "").strip())
    except ValueError:
        record.refuse(f"line {line}: date_of_birth", "invalid-date", "an ISO date (1984-03-02)")
        return None


def _csv_bool(record: Record, row: Mapping[str, str], column: str, line: int) -> bool | None:
    value = row.get(column, "").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    record.refuse(f"line {line}: {column}", "invalid-boolean", "true or false")
    return None


def _csv_float(record: Record, row: Mapping[str, str], column: str, line: int) -> float | None:
    value = row.get(column, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    limit = 90 if column == "latitude" else 180
    if not -limit <= number <= limit:
        record.refuse(f"line {line}: {column}", "invalid-coordinate", f"a number in ±{limit}")
        return None
    return number


def _csv_attributes(
    record: Record, row: Mapping[str, str], line: int, rules: CleaningRules
) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    schema: Any = rules.attributes.schema
    for name, kind in attribute_types(schema).items():
        value = row.get(f"attr.{name}", "").strip()
        if not value:
            continue
        try:
            attributes[name] = _typed(value, kind)
        except ValueError:
            record.refuse(f"line {line}: attr.{name}", "invalid-attribute", f"must be a {kind}")
    return attributes


def _typed(value: str, kind: str) -> Any:
    if kind == "integer":
        return int(value)
    if kind == "number":
        number = float(value)
        return int(number) if number.is_integer() and "." not in value else number
    if kind == "boolean":
        if value.lower() not in TRUE | FALSE:
            raise ValueError(value)
        return value.lower() in TRUE
    return value


def _csv_preference(
    record: Record,
    row: Mapping[str, str],
    line: int,
    default_currency: str,
    rules: CleaningRules,
) -> PreferenceDraft | None:
    if not any(row.get(column) for column in CSV_PAYMENT_COLUMNS):
        return None
    where = f"line {line}"
    provider = _uuid(record, row, "payment_provider_id", line, required=True)
    pay_point = _uuid(record, row, "payment_pay_point_id", line, required=False)
    mechanism = row.get("payment_mechanism", "").strip()
    if mechanism not in MECHANISMS:
        record.refuse(
            f"{where}: payment_mechanism",
            "invalid-mechanism",
            f"one of {', '.join(sorted(MECHANISMS))}",
        )
    currency = row.get("payment_currency", "").strip().upper() or default_currency
    if not re.fullmatch(r"[A-Z]{3}", currency):
        record.refuse(f"{where}: payment_currency", "invalid-currency", "an ISO 4217 code")
    account = None
    if row.get("payment_account_kind") or row.get("payment_account_value"):
        draft = AccountDraft(
            row.get("payment_account_kind", "").strip(),
            row.get("payment_account_value", ""),
            row.get("payment_bank_code") or None,
            row.get("payment_account_holder") or None,
        )
        cleaned = clean_account("account", draft, rules.phone_region)
        for refusal in cleaned.report.refusals:
            column = "payment_bank_code" if "bank_code" in refusal.field else "payment_account"
            record.refuse(f"{where}: {column}", refusal.code, refusal.message)
        account = cleaned.value
    if provider is None or record.errors:
        return None
    terms = domain.PreferenceTerms(
        provider, mechanism, currency, pay_point, account.kind if account else None
    )
    for problem in domain.preference_shape_problems(terms):
        record.refuse(f"{where}: payment_{problem.field}", problem.reason, problem.message)
    return PreferenceDraft(provider, mechanism, currency, pay_point, account)


def _uuid(
    record: Record, row: Mapping[str, str], column: str, line: int, *, required: bool
) -> UUID | None:
    value = row.get(column, "").strip()
    if not value:
        if required:
            record.refuse(f"line {line}: {column}", "required", "required with a preference")
        return None
    try:
        return UUID(value)
    except ValueError:
        record.refuse(f"line {line}: {column}", "invalid-uuid", "a UUID")
        return None


def check_preference(record: Record, provider: domain.ProviderView | None) -> None:
    """The preference against the provider projection, once the location is cleaned."""
    preference = record.preference
    if preference is None or record.draft is None:
        return
    terms = domain.PreferenceTerms(
        preference.provider_id,
        preference.mechanism,
        preference.currency,
        preference.pay_point_id,
        preference.account.kind if preference.account else None,
    )
    where = f"line {record.line}"
    for problem in domain.provider_problems(terms, provider, record.draft.location_code):
        record.refuse(f"{where}: payment_{problem.field}", problem.reason, problem.message)


# --- between processes ----------------------------------------------------------------------

WireRecord = tuple[Any, ...]


def to_wire(record: Record) -> WireRecord:
    """The record as plain tuples (what an import's reader processes send back: a tenth of
    the pickling cost of the dataclasses)."""
    draft, preference = record.draft, record.preference
    return (
        record.position,
        record.line,
        record.source_id,
        record.keys,
        record.household_number,
        None if draft is None else _draft_tuple(draft),
        None if preference is None else _preference_tuple(preference),
        record.claims,
        record.changes,
        record.errors,
        record.label,
        record.identifier_fields,
    )


def from_wire(wire: WireRecord) -> Record:
    (position, line, source_id, keys, number, draft, preference, claims, changes, errors) = wire[
        :10
    ]
    return Record(
        position,
        line,
        source_id,
        keys=keys,
        household_number=number,
        draft=None if draft is None else _draft_of(draft),
        preference=None if preference is None else _preference_of(preference),
        claims=claims,
        changes=changes,
        errors=errors,
        label=wire[10],
        identifier_fields=wire[11],
    )


def _draft_tuple(draft: HouseholdDraft) -> tuple[Any, ...]:
    return (
        draft.location_code,
        tuple(
            (
                m.given_name,
                m.family_name,
                m.sex,
                m.date_of_birth,
                m.relationship,
                m.disability,
                m.phone,
                m.is_primary_recipient,
                tuple((i.scheme, i.value) for i in m.identifiers),
            )
            for m in draft.members
        ),
        draft.address,
        draft.phone,
        draft.latitude,
        draft.longitude,
        dict(draft.eligibility_attributes),
    )


def _draft_of(values: tuple[Any, ...]) -> HouseholdDraft:
    location, members, address, phone, latitude, longitude, attributes = values
    return HouseholdDraft(
        location,
        tuple(_member_of(member) for member in members),
        address,
        phone,
        latitude,
        longitude,
        attributes,
    )


def _member_of(values: tuple[Any, ...]) -> MemberDraft:
    given, family, sex, born, relationship, disability, phone, recipient, identifiers = values
    return MemberDraft(
        given,
        family,
        sex,
        born,
        relationship,
        disability,
        phone,
        recipient,
        tuple(IdentifierDraft(scheme, value) for scheme, value in identifiers),
    )


def _preference_tuple(preference: PreferenceDraft) -> tuple[Any, ...]:
    account = preference.account
    return (
        preference.provider_id,
        preference.mechanism,
        preference.currency,
        preference.pay_point_id,
        None
        if account is None
        else (account.kind, account.value, account.bank_code, account.holder_name),
    )


def _preference_of(values: tuple[Any, ...]) -> PreferenceDraft:
    provider, mechanism, currency, pay_point, account = values
    return PreferenceDraft(
        provider,
        mechanism,
        currency,
        pay_point,
        None if account is None else AccountDraft(*account),
    )
