"""Synthetic population generator: seeded and reproducible (the same seed, size, locale and
Faker version give the same households, byte for byte).

    python -m registry generate --households 1000 --seed 7 --out /tmp/population
    python -m registry generate --households 200000 --load   # straight into the database

Households have realistic names for a Faker locale (`en_KE`, `sw`, ...), compositions (sizes
1-10, a head, often a spouse, children, sometimes a parent or a grandchild), ages, sexes and
disability, locations from the hierarchy's most detailed level, eligibility attributes and,
given provider options, payment preferences. Near-duplicates are injected at a known rate: a
copy of an earlier household with one or two variations (a typo, given and family names
swapped, a transliteration variant, a birth date off by a day or a month, the same identifier),
and the truth is written alongside.

Outputs (see README, "Synthetic population"): `households.ndjson` (one `POST /households`
body a line), `households.csv` (the import's CSV shape, one row per member), `truth.csv`
(household_code, duplicate_of, variations), or a set-based load into the database (COPY).
"""

from __future__ import annotations

import calendar
import csv
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from faker import Faker
from uuid6 import uuid7

from amana_common.check_digits import numbered
from amana_common.db import Database
from registry import repository
from registry.cleaning import LocationHierarchy
from registry.service import HOUSEHOLD_NUMBER_DIGITS, HOUSEHOLD_NUMBER_PREFIX

REFERENCE_DATE = date(2026, 1, 1)  # ages are counted to this day, not today: reproducible
SIZE_WEIGHTS = {1: 10, 2: 14, 3: 17, 4: 18, 5: 15, 6: 11, 7: 7, 8: 4, 9: 2, 10: 2}
HOUSING = ("permanent", "semi_permanent", "temporary", "none")
VARIATIONS = ("typo", "swapped_names", "transliteration", "birth_date", "same_identifier")
TRANSLITERATIONS = (
    ("mohamed", "mohammed"),
    ("muhammad", "mohamed"),
    ("ph", "f"),
    ("ou", "u"),
    ("ie", "ye"),
    ("ck", "k"),
    ("ee", "i"),
    ("y", "i"),
    ("e", "é"),
    ("a", "á"),
)
CSV_HOUSEHOLD_COLUMNS = (
    "household_code",
    "location_code",
    "address",
    "household_phone",
    "latitude",
    "longitude",
)
CSV_MEMBER_COLUMNS = (
    "given_name",
    "family_name",
    "sex",
    "date_of_birth",
    "relationship",
    "disability",
    "member_phone",
    "is_primary_recipient",
    "national_id",
    "passport",
    "birth_certificate",
    "voter_id",
    "social_registry_id",
)
CSV_PAYMENT_COLUMNS = (
    "payment_provider_id",
    "payment_mechanism",
    "payment_currency",
    "payment_pay_point_id",
    "payment_account_kind",
    "payment_account_value",
    "payment_bank_code",
    "payment_account_holder",
)
ATTRIBUTES = (
    "pmt_score",
    "housing_type",
    "monthly_income_minor",
    "female_headed",
    "has_orphan",
    "chronically_ill_member",
    "food_insecure",
    "displaced",
)


def csv_columns(attributes: Sequence[str] = ATTRIBUTES) -> list[str]:
    """The import's CSV header: household columns, `attr.<name>` per attribute, member
    columns, payment preference columns."""
    return [
        *CSV_HOUSEHOLD_COLUMNS,
        *(f"attr.{name}" for name in attributes),
        *CSV_MEMBER_COLUMNS,
        *CSV_PAYMENT_COLUMNS,
    ]


@dataclass(frozen=True)
class ProviderOption:
    """A way households may be paid: a provider, its mechanism and currency, its pay points
    (cash), and the areas it serves (empty: everywhere)."""

    provider_id: UUID
    mechanism: str
    currency: str = "KES"
    pay_point_ids: tuple[UUID, ...] = ()
    service_areas: tuple[str, ...] = ()


@dataclass(frozen=True)
class GeneratorConfig:
    households: int
    seed: int = 1
    locale: str = "en_KE"
    duplicate_rate: float = 0.02
    disability_rate: float = 0.05
    phone_rate: float = 0.85
    providers: tuple[ProviderOption, ...] = ()
    reference_date: date = REFERENCE_DATE


@dataclass(frozen=True)
class GeneratedHousehold:
    code: str
    body: dict[str, Any] = field(repr=False)
    duplicate_of: str | None = None
    variations: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Names:
    female: list[str]
    male: list[str]
    family: list[str]


@cache
def _names(locale: str, seed: int) -> _Names:
    """Name pools drawn once from Faker (seeded), then sampled with the generator's random."""
    fake = Faker(locale)
    fake.seed_instance(seed)
    return _Names(
        female=sorted({fake.first_name_female() for _ in range(3000)}),
        male=sorted({fake.first_name_male() for _ in range(3000)}),
        family=sorted({fake.last_name() for _ in range(3000)}),
    )


class Generator:
    def __init__(self, config: GeneratorConfig, locations: LocationHierarchy) -> None:
        self.config = config
        self.random = random.Random(config.seed)  # noqa: S311 (synthetic, reproducible)
        self.names = _names(config.locale, config.seed)
        self.places = locations.leaves()
        self._identifiers = 0

    def households(self) -> Iterator[GeneratedHousehold]:
        """`config.households` households; about `duplicate_rate` of them are near-duplicates
        of an earlier one."""
        kept: list[GeneratedHousehold] = []
        for index in range(1, self.config.households + 1):
            code = f"G{self.config.seed:03d}-{index:08d}"
            if kept and self.random.random() < self.config.duplicate_rate:
                household = self._near_duplicate(code, self.random.choice(kept))
            else:
                household = GeneratedHousehold(code, self._household())
                if len(kept) < 10_000:
                    kept.append(household)
                else:
                    kept[self.random.randrange(len(kept))] = household
            yield household

    # --- one household ------------------------------------------------------------------------

    def _household(self) -> dict[str, Any]:
        rng = self.random
        size = rng.choices(list(SIZE_WEIGHTS), weights=list(SIZE_WEIGHTS.values()))[0]
        family = rng.choice(self.names.family)
        head_sex = "female" if rng.random() < 0.45 else "male"
        head_age = min(85, max(18, int(rng.triangular(18, 85, 38))))
        members = [self._person("head", head_sex, head_age, family)]
        if size > 1 and rng.random() < 0.6:
            spouse_sex = "male" if head_sex == "female" else "female"
            members.append(
                self._person("spouse", spouse_sex, max(16, head_age + rng.randint(-8, 5)), family)
            )
        while len(members) < size:
            members.append(self._relative(head_age, family))
        if rng.random() < self.config.phone_rate:
            members[0]["phone"] = self._phone()
        location = rng.choice(self.places)
        body: dict[str, Any] = {
            "location_code": location,
            "address": f"Plot {rng.randint(1, 999)}",
            "eligibility_attributes": self._attributes(members),
            "members": members,
        }
        if rng.random() < 0.3:
            body["gps"] = {
                "latitude": round(rng.uniform(-4.5, 4.5), 5),
                "longitude": round(rng.uniform(34.0, 41.5), 5),
            }
        preference = self._preference(location, members[0])
        if preference is not None:
            body["payment_preference"] = preference
        return body

    def _relative(self, head_age: int, family: str) -> dict[str, Any]:
        rng = self.random
        roll = rng.random()
        sex = rng.choice(("female", "male"))
        if roll < 0.8 and head_age >= 16:
            return self._person("child", sex, rng.randint(0, min(25, head_age - 15)), family)
        if roll < 0.88 and head_age + 20 <= 95:
            return self._person("parent", sex, rng.randint(head_age + 18, 95), family)
        if roll < 0.95:
            return self._person("grandchild", sex, rng.randint(0, 8), family)
        return self._person(
            "other_relative", sex, rng.randint(0, 70), rng.choice(self.names.family)
        )

    def _person(self, relationship: str, sex: str, age: int, family: str) -> dict[str, Any]:
        rng = self.random
        given = rng.choice(self.names.female if sex == "female" else self.names.male)
        born = self.config.reference_date - timedelta(days=age * 365 + rng.randint(0, 364))
        identifiers = []
        if age >= 18:
            identifiers.append({"scheme": "national_id", "value": self._national_id()})
        elif rng.random() < 0.5:
            identifiers.append({"scheme": "birth_certificate", "value": self._national_id("B")})
        return {
            "given_name": given,
            "family_name": family,
            "sex": sex,
            "date_of_birth": born.isoformat(),
            "relationship": relationship,
            "disability": rng.random() < self.config.disability_rate,
            "identifiers": identifiers,
        }

    def _national_id(self, prefix: str = "") -> str:
        """Unique within a run: a counter spread over 8 digits by a multiplier prime to 9e7."""
        self._identifiers += 1
        spread = (self._identifiers * 7_919 + self.config.seed * 1_013) % 89_999_999
        return f"{prefix}{10_000_000 + spread}"

    def _phone(self) -> str:
        return f"+2547{self.random.randint(10, 29)}{self.random.randint(0, 999_999):06d}"

    def _attributes(self, members: list[dict[str, Any]]) -> dict[str, Any]:
        rng = self.random
        return {
            "pmt_score": round(rng.uniform(0, 100), 1),
            "housing_type": rng.choice(HOUSING),
            "monthly_income_minor": rng.randint(0, 50_000) * 100,
            "female_headed": members[0]["sex"] == "female",
            "has_orphan": rng.random() < 0.1,
            "chronically_ill_member": rng.random() < 0.08,
            "food_insecure": rng.random() < 0.3,
            "displaced": rng.random() < 0.03,
        }

    def _preference(self, location: str, head: dict[str, Any]) -> dict[str, Any] | None:
        options = [
            option
            for option in self.config.providers
            if not option.service_areas
            or any(
                location == a or location.startswith((f"{a}-", f"{a}."))
                for a in option.service_areas
            )
        ]
        if not options:
            return None
        option = self.random.choice(options)
        preference: dict[str, Any] = {
            "provider_id": str(option.provider_id),
            "mechanism": option.mechanism,
            "currency": option.currency,
        }
        if option.mechanism == "cash_pay_point":
            preference["pay_point_id"] = str(self.random.choice(option.pay_point_ids))
        elif option.mechanism == "mobile_money":
            preference["account"] = {"kind": "msisdn", "value": head.get("phone") or self._phone()}
        elif option.mechanism == "bank_transfer":
            number = f"{self.random.randint(0, 10**10 - 1):010d}"
            preference["account"] = {"kind": "bank_account", "value": number, "bank_code": "01"}
        else:
            kind = "card" if option.mechanism == "prepaid_card" else "voucher"
            preference["account"] = {"kind": kind, "value": self._national_id("C")}
        return preference

    # --- near-duplicates ----------------------------------------------------------------------

    def _near_duplicate(self, code: str, original: GeneratedHousehold) -> GeneratedHousehold:
        rng = self.random
        body = json.loads(json.dumps(original.body))
        variations = tuple(sorted(rng.sample(VARIATIONS, rng.choice((1, 1, 2)))))
        head = body["members"][0]
        for member in body["members"]:
            if "same_identifier" not in variations or member is not head:
                for identifier in member["identifiers"]:
                    prefix = "B" if identifier["scheme"] == "birth_certificate" else ""
                    identifier["value"] = self._national_id(prefix)
        for variation in variations:
            self._vary(head, variation)
        return GeneratedHousehold(code, body, original.code, variations)

    def _vary(self, person: dict[str, Any], variation: str) -> None:
        rng = self.random
        if variation == "typo":
            key = rng.choice(("given_name", "family_name"))
            person[key] = typo(person[key], rng)
        elif variation == "swapped_names":
            person["given_name"], person["family_name"] = (
                person["family_name"],
                person["given_name"],
            )
        elif variation == "transliteration":
            key = rng.choice(("given_name", "family_name"))
            person[key] = transliterate(person[key])
        elif variation == "birth_date":
            born = date.fromisoformat(person["date_of_birth"])
            person["date_of_birth"] = (
                born + timedelta(days=rng.choice((-1, 1)))
                if rng.random() < 0.5
                else _shift_month(born, rng.choice((-1, 1)))
            ).isoformat()


def typo(name: str, rng: random.Random) -> str:
    """One keyboard slip: a letter replaced, dropped, doubled, or two letters swapped."""
    if len(name) < 3:
        return name + name[-1]
    position = rng.randrange(1, len(name) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        letter = rng.choice("aeiounrst".replace(name[position].lower(), ""))
        return name[:position] + letter + name[position + 1 :]
    if kind == 1:
        return name[:position] + name[position + 1 :]
    if kind == 2:
        return name[:position] + name[position] + name[position:]
    return name[:position] + name[position + 1] + name[position] + name[position + 2 :]


def transliterate(name: str) -> str:
    """The first applicable spelling variant (Mohamed -> Mohammed, ph -> f, e -> é, ...)."""
    lower = name.lower()
    for before, after in TRANSLITERATIONS:
        at = lower.find(before)
        if at >= 0:
            replaced = name[:at] + after + name[at + len(before) :]
            return replaced[0].upper() + replaced[1:]
    return name + "h"


def _shift_month(day: date, months: int) -> date:
    """The same day `months` later (or earlier), the month's last day when it has no such day."""
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


# --- outputs ---------------------------------------------------------------------------------


def write_ndjson(households: Sequence[GeneratedHousehold], out: TextIO) -> None:
    for household in households:
        out.write(json.dumps(household.body, ensure_ascii=False, separators=(",", ":")) + "\n")


def fhir_resources(household: GeneratedHousehold) -> list[dict[str, Any]]:
    """The household as FHIR R4 in Amana's shape (README, "FHIR mapping"): a Group whose
    members are its Patients, the relationship to the head on each Group.member."""
    from registry import fhir

    body = household.body
    patients = [
        _patient(f"{household.code}-{index + 1}", member)
        for index, member in enumerate(body["members"])
    ]
    address: dict[str, Any] = {"use": "home", "type": "physical"}
    if body.get("address"):
        address["text"] = body["address"]
    gps = body.get("gps")
    if gps:
        address["extension"] = [
            {
                "url": fhir.GEOLOCATION,
                "extension": [
                    {"url": "latitude", "valueDecimal": gps["latitude"]},
                    {"url": "longitude", "valueDecimal": gps["longitude"]},
                ],
            }
        ]
    extensions: list[dict[str, Any]] = [
        {"url": fhir.EXT_LOCATION, "valueCode": body["location_code"]},
        {"url": fhir.EXT_ADDRESS, "valueAddress": address},
    ]
    attributes = body.get("eligibility_attributes") or {}
    if attributes:
        extensions.append(
            {
                "url": fhir.EXT_ATTRIBUTE,
                "extension": [
                    fhir.attribute_extension(name, value) for name, value in attributes.items()
                ],
            }
        )
    group = {
        "resourceType": "Group",
        "id": household.code,
        "extension": extensions,
        "identifier": [{"system": "https://amana.dev/fhir/generator", "value": household.code}],
        "type": "person",
        "actual": True,
        "quantity": len(patients),
        "member": [
            {
                "extension": [{"url": fhir.EXT_RELATIONSHIP, "valueCode": member["relationship"]}],
                "entity": {"reference": f"Patient/{patient['id']}"},
            }
            for member, patient in zip(body["members"], patients, strict=True)
        ],
    }
    return [group, *patients]


def _patient(patient_id: str, member: dict[str, Any]) -> dict[str, Any]:
    from registry import fhir

    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "extension": [{"url": fhir.EXT_DISABILITY, "valueBoolean": bool(member.get("disability"))}],
        "name": [
            {"use": "official", "family": member["family_name"], "given": [member["given_name"]]}
        ],
        "gender": member["sex"],
        "birthDate": member["date_of_birth"],
    }
    identifiers = [
        {"system": f"{fhir.IDENTIFIER_SYSTEM}/{i['scheme']}", "value": i["value"]}
        for i in member.get("identifiers", [])
    ]
    if identifiers:
        patient["identifier"] = identifiers
    if member.get("phone"):
        patient["telecom"] = [{"system": "phone", "value": member["phone"]}]
    return patient


def write_fhir_ndjson(households: Sequence[GeneratedHousehold], out: TextIO) -> None:
    """FHIR NDJSON (Bulk Data): each household's Group followed by its Patients."""
    for household in households:
        for resource in fhir_resources(household):
            out.write(json.dumps(resource, ensure_ascii=False, separators=(",", ":")) + "\n")


def write_truth(households: Sequence[GeneratedHousehold], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("household_code", "duplicate_of", "variations"))
    for household in households:
        if household.duplicate_of is not None:
            writer.writerow(
                (household.code, household.duplicate_of, "+".join(household.variations))
            )


def write_csv(households: Sequence[GeneratedHousehold], out: TextIO) -> None:
    """One row per member, grouped by household code; the household, attribute and payment
    columns are given on the household's first row (its head) and left empty on the others."""
    writer = csv.DictWriter(out, fieldnames=csv_columns(), lineterminator="\n")
    writer.writeheader()
    for household in households:
        for position, member in enumerate(household.body["members"]):
            row = _member_row(member)
            row["household_code"] = household.code
            if position == 0:
                row.update(_household_row(household.body))
            writer.writerow(row)


def _member_row(member: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "given_name": member["given_name"],
        "family_name": member["family_name"],
        "sex": member["sex"],
        "date_of_birth": member["date_of_birth"],
        "relationship": member["relationship"],
        "disability": "true" if member.get("disability") else "false",
        "member_phone": member.get("phone", ""),
        "is_primary_recipient": "true" if member.get("is_primary_recipient") else "",
    }
    for identifier in member.get("identifiers", []):
        row[identifier["scheme"]] = identifier["value"]
    return row


def _household_row(body: dict[str, Any]) -> dict[str, Any]:
    gps = body.get("gps") or {}
    row: dict[str, Any] = {
        "location_code": body["location_code"],
        "address": body.get("address", ""),
        "household_phone": body.get("phone", ""),
        "latitude": gps.get("latitude", ""),
        "longitude": gps.get("longitude", ""),
    }
    for name, value in body.get("eligibility_attributes", {}).items():
        row[f"attr.{name}"] = str(value).lower() if isinstance(value, bool) else value
    preference = body.get("payment_preference")
    if preference:
        account = preference.get("account") or {}
        row.update(
            {
                "payment_provider_id": preference["provider_id"],
                "payment_mechanism": preference["mechanism"],
                "payment_currency": preference.get("currency", ""),
                "payment_pay_point_id": preference.get("pay_point_id", ""),
                "payment_account_kind": account.get("kind", ""),
                "payment_account_value": account.get("value", ""),
                "payment_bank_code": account.get("bank_code", ""),
                "payment_account_holder": account.get("holder_name", ""),
            }
        )
    return row


def write_files(households: Sequence[GeneratedHousehold], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, writer in (
        ("households.ndjson", write_ndjson),
        ("households.csv", write_csv),
        ("households.fhir.ndjson", write_fhir_ndjson),
        ("truth.csv", write_truth),
    ):
        path = directory / name
        with path.open("w", encoding="utf-8", newline="") as out:
            writer(households, out)
        written.append(path)
    return written


# --- the benchmarks' fast path ---------------------------------------------------------------


async def load(
    database: Database, households: Iterable[GeneratedHousehold], batch_size: int = 10_000
) -> int:
    """Loads households straight into the database, set-based (COPY), one transaction per
    batch; answers how many. For benchmarks and demos: no events and no history are written,
    and an identifier repeated by a `same_identifier` near-duplicate is left off the copy (the
    database holds one household per identifier). Payment preferences are copied unchecked."""
    loaded = 0
    seen: set[tuple[str, str]] = set()
    batch: list[GeneratedHousehold] = []
    for household in households:
        batch.append(household)
        if len(batch) == batch_size:
            loaded += await _load_batch(database, batch, seen)
            batch = []
    if batch:
        loaded += await _load_batch(database, batch, seen)
    return loaded


async def _load_batch(
    database: Database, batch: list[GeneratedHousehold], seen: set[tuple[str, str]]
) -> int:
    now = datetime.now(UTC)
    rows = _Rows()
    async with database.sessionmaker() as session, session.begin():
        first = await repository.reserve_household_numbers(session, len(batch))
        for offset, household in enumerate(batch):
            rows.add(household.body, first + offset, now, seen)
        await repository.copy_rows(session, rows.tables())
    return len(batch)


class _Rows:
    """Generated bodies as rows of the registry's tables, in COPY column order."""

    def __init__(self) -> None:
        self.households: list[tuple[Any, ...]] = []
        self.members: list[tuple[Any, ...]] = []
        self.identifiers: list[tuple[Any, ...]] = []
        self.preferences: list[tuple[Any, ...]] = []

    def add(
        self, body: dict[str, Any], sequence: int, now: datetime, seen: set[tuple[str, str]]
    ) -> None:
        household_id = uuid7()
        gps = body.get("gps") or {}
        self.households.append(
            (
                household_id,
                numbered(HOUSEHOLD_NUMBER_PREFIX, sequence, HOUSEHOLD_NUMBER_DIGITS),
                body["location_code"],
                "active",
                now,
                body.get("address"),
                body.get("phone"),
                gps.get("latitude"),
                gps.get("longitude"),
                json.dumps(body.get("eligibility_attributes", {})),
                False,
                now,
                now,
                1,
            )
        )
        for position, member in enumerate(body["members"]):
            self._member(household_id, position, member, seen)
        preference = body.get("payment_preference")
        if preference:
            account = preference.get("account") or {}
            pay_point = preference.get("pay_point_id")
            self.preferences.append(
                (
                    household_id,
                    UUID(preference["provider_id"]),
                    preference["mechanism"],
                    preference.get("currency", "KES"),
                    UUID(pay_point) if pay_point else None,
                    account.get("kind"),
                    account.get("value"),
                    account.get("bank_code"),
                    account.get("holder_name"),
                    now,
                )
            )

    def _member(
        self,
        household_id: UUID,
        position: int,
        member: dict[str, Any],
        seen: set[tuple[str, str]],
    ) -> None:
        member_id = uuid7()
        head = member["relationship"] == "head"
        self.members.append(
            (
                member_id,
                household_id,
                position,
                head,
                head,
                member["relationship"],
                member["given_name"],
                member["family_name"],
                member["sex"],
                date.fromisoformat(member["date_of_birth"]),
                member.get("disability", False),
                member.get("phone"),
            )
        )
        for identifier in member.get("identifiers", []):
            key = (identifier["scheme"], identifier["value"])
            if key not in seen:
                seen.add(key)
                self.identifiers.append(
                    (member_id, identifier["scheme"], identifier["value"], household_id, False)
                )

    def tables(self) -> list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
        return [
            ("households", HOUSEHOLD_COLUMNS, self.households),
            ("members", MEMBER_COLUMNS, self.members),
            ("member_identifiers", IDENTIFIER_COLUMNS, self.identifiers),
            ("payment_preferences", PREFERENCE_COLUMNS, self.preferences),
        ]


HOUSEHOLD_COLUMNS = (
    "id",
    "household_number",
    "location_code",
    "status",
    "status_changed_at",
    "address",
    "phone",
    "latitude",
    "longitude",
    "eligibility_attributes",
    "duplicate_review_open",
    "enrolled_at",
    "updated_at",
    "version",
)
MEMBER_COLUMNS = (
    "id",
    "household_id",
    "position",
    "is_head",
    "is_primary_recipient",
    "relationship",
    "given_name",
    "family_name",
    "sex",
    "date_of_birth",
    "disability",
    "phone",
)
IDENTIFIER_COLUMNS = ("member_id", "scheme", "value", "household_id", "household_exited")
PREFERENCE_COLUMNS = (
    "household_id",
    "provider_id",
    "mechanism",
    "currency",
    "pay_point_id",
    "account_kind",
    "account_value",
    "bank_code",
    "holder_name",
    "set_at",
)
