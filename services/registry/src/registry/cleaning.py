"""Data cleaning at entry: pure functions that answer the cleaned value plus what they changed
and why they refused. The API, the CSV and the FHIR imports all clean through here, so a record
is cleaned the same way whichever door it came in by; an import writes the `CleaningReport` of
every record to its cleaning report.

Rules (README, "Cleaning rules"):
- names and free text: Unicode NFC, runs of whitespace collapsed to one space, trimmed;
  control characters refused;
- phone numbers: parsed with `phonenumbers` (a number without a country code is read in the
  configured region) and written as E.164; an invalid number is refused;
- identifiers: spaces and separators removed; a scheme with a configured python-stdnum
  validator is checked with it (check digits included), other schemes by shape;
- bank accounts: an IBAN is checked with schwifty (country, length, check digits); a local
  account number needs a bank code;
- location codes: upper-cased and checked against the configured hierarchy;
- eligibility attributes: checked against the deployment's JSON Schema;
- dates of birth: not in the future, not before 1900.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Generic, Protocol, TypeVar

import phonenumbers
from jsonschema import Draft202012Validator
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from stdnum.exceptions import ValidationError as StdnumError

from amana_common.locations import ancestors_or_self

T = TypeVar("T")

NAME_MAX = 100
TEXT_MAX = 500
EARLIEST_BIRTH = date(1900, 1, 1)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_LINE_BREAK = re.compile("[\n\t\r]")
_IDENTIFIER_SEPARATORS = re.compile(r"[\s.\-/]")
_IDENTIFIER_SHAPE = re.compile(r"[A-Z0-9]{1,64}")
_LOCAL_ACCOUNT = re.compile(r"[0-9A-Z]{4,34}")
_BANK_CODE = re.compile(r"[0-9A-Z]{2,11}")
_CARD_OR_VOUCHER = re.compile(r"[0-9A-Z]{4,64}")


@dataclass(frozen=True)
class Change:
    """A value the cleaning changed (`rule` says which rule)."""

    field: str
    before: Any
    after: Any
    rule: str


@dataclass(frozen=True)
class Refusal:
    """A value the cleaning refused: `code` is stable, `message` is for people."""

    field: str
    code: str
    message: str


@dataclass
class CleaningReport:
    changes: list[Change] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.refusals

    def change(self, field_name: str, before: Any, after: Any, rule: str) -> None:
        if before != after:
            self.changes.append(Change(field_name, before, after, rule))

    def refuse(self, field_name: str, code: str, message: str) -> None:
        self.refusals.append(Refusal(field_name, code, message))

    def as_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "changes": [vars(c) for c in self.changes],
            "refusals": [vars(r) for r in self.refusals],
        }


@dataclass(frozen=True)
class Cleaned(Generic[T]):
    """A cleaned value (None when refused) and its report."""

    value: T | None
    report: CleaningReport


# --- reference data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Area:
    code: str
    name: str
    level: int
    parent: str | None


@dataclass(frozen=True)
class LocationHierarchy:
    """Administrative areas of levels 1-4; a code nests in its parent at a `-` or `.`."""

    areas: Mapping[str, Area]

    def __contains__(self, code: object) -> bool:
        return code in self.areas

    def codes_at_level(self, level: int) -> list[str]:
        return sorted(code for code, area in self.areas.items() if area.level == level)

    def leaves(self) -> list[str]:
        parents = {area.parent for area in self.areas.values()}
        return sorted(code for code in self.areas if code not in parents)


def parse_hierarchy(rows: list[dict[str, str]]) -> LocationHierarchy:
    """Rows of `code,name,level,parent_code` (a CSV read by the caller). Raises ValueError
    naming the first bad row: a deployment must not start with a broken hierarchy."""
    areas: dict[str, Area] = {}
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        code = (row.get("code") or "").strip()
        parent = (row.get("parent_code") or "").strip() or None
        try:
            level = int(row.get("level") or "")
        except ValueError:
            raise ValueError(f"locations row {number}: level must be 1-4") from None
        if not re.fullmatch(r"[A-Z0-9][A-Z0-9._-]{0,49}", code):
            raise ValueError(f"locations row {number}: {code!r} is not a location code")
        if not 1 <= level <= 4 or code in areas:
            raise ValueError(f"locations row {number}: bad level or repeated code {code}")
        if (level == 1) != (parent is None):
            raise ValueError(f"locations row {number}: only level 1 has no parent")
        if parent is not None:
            above = areas.get(parent)
            if above is None or above.level != level - 1 or parent not in ancestors_or_self(code):
                raise ValueError(
                    f"locations row {number}: parent {parent} must come first, one level up, "
                    f"and {code} must start with it followed by '-' or '.'"
                )
        areas[code] = Area(code, (row.get("name") or "").strip(), level, parent)
    if not areas:
        raise ValueError("the location hierarchy is empty")
    return LocationHierarchy(areas)


class IdentifierValidator(Protocol):
    """A python-stdnum module (`stdnum.za.idnr`, ...): `compact` then `validate`."""

    def compact(self, number: str) -> str: ...

    def validate(self, number: str) -> str: ...


@dataclass(frozen=True)
class CleaningRules:
    phone_region: str
    locations: LocationHierarchy
    attributes: Draft202012Validator
    identifier_validators: Mapping[str, IdentifierValidator] = field(default_factory=dict)


# --- single values -------------------------------------------------------------------------


def clean_text(
    field_name: str, value: str, *, max_length: int = TEXT_MAX, multiline: bool = False
) -> Cleaned[str]:
    """NFC, whitespace runs collapsed (line breaks kept when `multiline`), trimmed."""
    report = CleaningReport()
    if _CONTROL.search(value) or (not multiline and _LINE_BREAK.search(value)):
        report.refuse(field_name, "control-character", "contains a control character")
        return Cleaned(None, report)
    if "\ufffd" in value:
        report.refuse(
            field_name,
            "replacement-character",
            "contains U+FFFD: the text was decoded with the wrong encoding somewhere before",
        )
        return Cleaned(None, report)
    text = unicodedata.normalize("NFC", value)
    if multiline:
        lines = (" ".join(line.split()) for line in text.replace("\r", "").split("\n"))
        cleaned = "\n".join(line for line in lines if line)
    else:
        cleaned = " ".join(text.split())
    if not cleaned:
        report.refuse(field_name, "empty", "must not be empty")
        return Cleaned(None, report)
    if len(cleaned) > max_length:
        report.refuse(field_name, "too-long", f"must be at most {max_length} characters")
        return Cleaned(None, report)
    report.change(field_name, value, cleaned, "normalised-text")
    return Cleaned(cleaned, report)


def clean_name(field_name: str, value: str) -> Cleaned[str]:
    return clean_text(field_name, value, max_length=NAME_MAX)


def clean_phone(field_name: str, value: str, region: str) -> Cleaned[str]:
    report = CleaningReport()
    if _CONTROL.search(value):
        report.refuse(field_name, "control-character", "contains a control character")
        return Cleaned(None, report)
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        report.refuse(field_name, "invalid-phone", f"is not a valid phone number (region {region})")
        return Cleaned(None, report)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    report.change(field_name, value, e164, "phone-e164")
    return Cleaned(e164, report)


def clean_identifier(
    field_name: str, scheme: str, value: str, validators: Mapping[str, IdentifierValidator]
) -> Cleaned[str]:
    report = CleaningReport()
    validator = validators.get(scheme)
    compact = _IDENTIFIER_SEPARATORS.sub("", value).upper()
    if validator is not None:
        try:
            compact = validator.validate(validator.compact(value))
        except StdnumError as error:
            report.refuse(field_name, "invalid-identifier", f"is not a valid {scheme}: {error}")
            return Cleaned(None, report)
    if not _IDENTIFIER_SHAPE.fullmatch(compact):
        report.refuse(field_name, "invalid-identifier", "must be 1-64 letters and digits")
        return Cleaned(None, report)
    report.change(field_name, value, compact, "identifier-compacted")
    return Cleaned(compact, report)


def clean_location(field_name: str, value: str, locations: LocationHierarchy) -> Cleaned[str]:
    report = CleaningReport()
    code = value.strip().upper()
    if code not in locations:
        report.refuse(field_name, "unknown-location", f"{code!r} is not in the location hierarchy")
        return Cleaned(None, report)
    report.change(field_name, value, code, "location-upper-cased")
    return Cleaned(code, report)


def clean_birth_date(field_name: str, value: date, today: date) -> Cleaned[date]:
    report = CleaningReport()
    if value > today:
        report.refuse(field_name, "birth-date-in-future", "date of birth is in the future")
        return Cleaned(None, report)
    if value < EARLIEST_BIRTH:
        report.refuse(field_name, "birth-date-too-early", "date of birth is before 1900-01-01")
        return Cleaned(None, report)
    return Cleaned(value, report)


def clean_attributes(
    field_name: str, value: Mapping[str, Any], schema: Draft202012Validator
) -> Cleaned[dict[str, Any]]:
    report = CleaningReport()
    for name, item in value.items():
        if _CONTROL.search(name) or (isinstance(item, str) and _CONTROL.search(item)):
            report.refuse(
                f"{field_name}.{name}", "control-character", "contains a control character"
            )
    for error in sorted(schema.iter_errors(dict(value)), key=lambda e: list(e.absolute_path)):
        path = ".".join([field_name, *(str(part) for part in error.absolute_path)])
        report.refuse(path, "invalid-attribute", error.message)
    return Cleaned(None if report.refusals else dict(value), report)


@dataclass(frozen=True)
class AccountDraft:
    kind: str
    value: str
    bank_code: str | None = None
    holder_name: str | None = None


def clean_account(field_name: str, account: AccountDraft, region: str) -> Cleaned[AccountDraft]:
    """msisdn: a phone number (E.164); iban: schwifty; bank_account: a local number and a bank
    code (a BIC is checked with schwifty); card and voucher numbers: letters and digits."""
    report = CleaningReport()
    cleaners: dict[str, Callable[[str, AccountDraft, str], Cleaned[AccountDraft]]] = {
        "msisdn": _clean_msisdn,
        "iban": _clean_iban,
        "bank_account": _clean_local_account,
    }
    cleaned = cleaners.get(account.kind, _clean_card_or_voucher)(field_name, account, region)
    report.changes.extend(cleaned.report.changes)
    report.refusals.extend(cleaned.report.refusals)
    if cleaned.value is not None and account.holder_name is not None:
        holder = _merge(report, clean_name(f"{field_name}.holder_name", account.holder_name))
        return Cleaned(
            None if holder is None else replace(cleaned.value, holder_name=holder), report
        )
    return Cleaned(cleaned.value, report)


def _clean_msisdn(field_name: str, account: AccountDraft, region: str) -> Cleaned[AccountDraft]:
    phone = clean_phone(f"{field_name}.value", account.value, region)
    value = None if phone.value is None else replace(account, value=phone.value)
    return Cleaned(value, phone.report)


def _clean_iban(field_name: str, account: AccountDraft, region: str) -> Cleaned[AccountDraft]:
    report = CleaningReport()
    try:
        iban = IBAN(account.value)
    except SchwiftyException as error:
        report.refuse(f"{field_name}.value", "invalid-iban", f"is not a valid IBAN: {error}")
        return Cleaned(None, report)
    report.change(f"{field_name}.value", account.value, iban.compact, "iban-compacted")
    bic = iban.bic
    return Cleaned(
        replace(
            account,
            value=iban.compact,
            bank_code=account.bank_code or (str(bic) if bic is not None else None),
        ),
        report,
    )


def _clean_local_account(
    field_name: str, account: AccountDraft, region: str
) -> Cleaned[AccountDraft]:
    report = CleaningReport()
    number = _IDENTIFIER_SEPARATORS.sub("", account.value).upper()
    bank_code = _IDENTIFIER_SEPARATORS.sub("", account.bank_code or "").upper()
    if not _LOCAL_ACCOUNT.fullmatch(number):
        report.refuse(f"{field_name}.value", "invalid-account", "must be 4-34 letters and digits")
    if not bank_code:
        report.refuse(
            f"{field_name}.bank_code",
            "bank-code-required",
            "a bank account needs the bank's code (BIC or national bank/branch code)",
        )
    elif len(bank_code) in (8, 11) and bank_code[:6].isalpha():
        try:
            BIC(bank_code)
        except SchwiftyException as error:
            report.refuse(f"{field_name}.bank_code", "invalid-bic", f"is not a valid BIC: {error}")
    elif not _BANK_CODE.fullmatch(bank_code):
        report.refuse(
            f"{field_name}.bank_code", "invalid-bank-code", "must be 2-11 letters and digits"
        )
    if report.refusals:
        return Cleaned(None, report)
    report.change(f"{field_name}.value", account.value, number, "account-compacted")
    return Cleaned(replace(account, value=number, bank_code=bank_code), report)


def _clean_card_or_voucher(
    field_name: str, account: AccountDraft, region: str
) -> Cleaned[AccountDraft]:
    report = CleaningReport()
    number = _IDENTIFIER_SEPARATORS.sub("", account.value).upper()
    if not _CARD_OR_VOUCHER.fullmatch(number):
        report.refuse(f"{field_name}.value", "invalid-account", "must be 4-64 letters and digits")
        return Cleaned(None, report)
    report.change(f"{field_name}.value", account.value, number, "account-compacted")
    return Cleaned(replace(account, value=number), report)


def _merge(report: CleaningReport, cleaned: Cleaned[T]) -> T | None:
    report.changes.extend(cleaned.report.changes)
    report.refusals.extend(cleaned.report.refusals)
    return cleaned.value


# --- a whole household ---------------------------------------------------------------------


@dataclass(frozen=True)
class IdentifierDraft:
    scheme: str
    value: str


@dataclass(frozen=True)
class MemberDraft:
    given_name: str
    family_name: str
    sex: str
    date_of_birth: date
    relationship: str
    disability: bool = False
    phone: str | None = None
    is_primary_recipient: bool = False
    identifiers: tuple[IdentifierDraft, ...] = ()


@dataclass(frozen=True)
class HouseholdDraft:
    """A household as it enters the registry (from the API or an import), before cleaning."""

    location_code: str
    members: tuple[MemberDraft, ...]
    address: str | None = None
    phone: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    eligibility_attributes: Mapping[str, Any] = field(default_factory=dict)


def at(prefix: str, name: str) -> str:
    """The path of field `name` inside `prefix` (`members.0` + `phone`)."""
    return f"{prefix}.{name}" if prefix else name


def clean_member(
    prefix: str, member: MemberDraft, rules: CleaningRules, today: date
) -> Cleaned[MemberDraft]:
    """One member's fields; `prefix` is its path in the request (`members.0`, or empty)."""
    report = CleaningReport()
    given = _merge(report, clean_name(at(prefix, "given_name"), member.given_name))
    family = _merge(report, clean_name(at(prefix, "family_name"), member.family_name))
    born = _merge(
        report, clean_birth_date(at(prefix, "date_of_birth"), member.date_of_birth, today)
    )
    phone = (
        _merge(report, clean_phone(at(prefix, "phone"), member.phone, rules.phone_region))
        if member.phone is not None
        else None
    )
    identifiers = []
    for index, identifier in enumerate(member.identifiers):
        value = _merge(
            report,
            clean_identifier(
                at(prefix, f"identifiers.{index}.value"),
                identifier.scheme,
                identifier.value,
                rules.identifier_validators,
            ),
        )
        identifiers.append(IdentifierDraft(identifier.scheme, value or identifier.value))
    schemes = [identifier.scheme for identifier in member.identifiers]
    if len(schemes) != len(set(schemes)):
        report.refuse(
            at(prefix, "identifiers"),
            "repeated-scheme",
            "a member has at most one identifier per scheme",
        )
    if report.refusals:
        return Cleaned(None, report)
    assert given is not None and family is not None and born is not None
    return Cleaned(
        replace(
            member,
            given_name=given,
            family_name=family,
            date_of_birth=born,
            phone=phone,
            identifiers=tuple(identifiers),
        ),
        report,
    )


def clean_household(
    draft: HouseholdDraft, rules: CleaningRules, today: date
) -> Cleaned[HouseholdDraft]:
    """Cleans every field and checks the household's own rules: exactly one head, at most one
    primary recipient (the head when none is named), an identifier used once."""
    report = CleaningReport()
    location = _merge(report, clean_location("location_code", draft.location_code, rules.locations))
    address = (
        _merge(report, clean_text("address", draft.address, multiline=True))
        if draft.address is not None
        else None
    )
    phone = (
        _merge(report, clean_phone("phone", draft.phone, rules.phone_region))
        if draft.phone is not None
        else None
    )
    attributes = _merge(
        report,
        clean_attributes("eligibility_attributes", draft.eligibility_attributes, rules.attributes),
    )
    members = [
        _merge(report, clean_member(f"members.{index}", member, rules, today))
        for index, member in enumerate(draft.members)
    ]
    _check_roles(report, draft.members)
    _check_identifiers_once(report, draft.members)
    if report.refusals:
        return Cleaned(None, report)
    assert location is not None and attributes is not None
    cleaned = [member for member in members if member is not None]
    return Cleaned(
        replace(
            draft,
            location_code=location,
            address=address,
            phone=phone,
            eligibility_attributes=attributes,
            members=tuple(with_default_recipient(cleaned)),
        ),
        report,
    )


def with_default_recipient(members: list[MemberDraft]) -> list[MemberDraft]:
    """The head receives the payments unless another member is named primary recipient."""
    if any(member.is_primary_recipient for member in members):
        return members
    return [
        replace(member, is_primary_recipient=member.relationship == "head") for member in members
    ]


def _check_roles(report: CleaningReport, members: tuple[MemberDraft, ...]) -> None:
    heads = sum(1 for member in members if member.relationship == "head")
    if heads != 1:
        report.refuse("members", "one-head", f"a household has exactly one head, found {heads}")
    recipients = sum(1 for member in members if member.is_primary_recipient)
    if recipients > 1:
        report.refuse(
            "members",
            "one-primary-recipient",
            f"a household has exactly one primary recipient, found {recipients}",
        )


def _check_identifiers_once(report: CleaningReport, members: tuple[MemberDraft, ...]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for index, member in enumerate(members):
        for position, identifier in enumerate(member.identifiers):
            key = (identifier.scheme, _IDENTIFIER_SEPARATORS.sub("", identifier.value).upper())
            if key in seen:
                report.refuse(
                    f"members.{index}.identifiers.{position}.value",
                    "repeated-identifier",
                    f"the same {identifier.scheme} is given for members {seen[key]} and {index}",
                )
            seen.setdefault(key, index)
