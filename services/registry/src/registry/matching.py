"""Duplicate detection rules: how two households are compared, scored and explained, how a
flag may change, and how a decided duplicate is merged. Pure: no HTTP, no session.

The score is a Fellegi-Sunter match weight: each comparison adds the log2 of how much more
often its outcome is seen for two records of one household than for two different ones
(agreement adds, disagreement subtracts), and the sum with a prior gives a probability,
`score = 1 / (1 + 2 ** -(weight + PRIOR))`. The weights are set by hand (README, "Duplicate
detection") and checked against the generator's injected duplicates (bench/registry_dedupe.py).

Members are compared pairwise (names, with swapped names and spelling variants; date of
birth; sex; identifiers; phone) and matched one to one, best first; the household adds its
location, address, phone and GPS, and loses weight for each member of the smaller household
that matches nobody.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from typing import Any, Literal
from uuid import UUID

import jellyfish

from amana_common.locations import ancestors_or_self
from registry.cleaning import HouseholdDraft, IdentifierDraft, MemberDraft
from registry.domain import RuleBroken

FlagStatus = Literal["open", "not_duplicate", "duplicate_merged", "duplicate_exited", "resolved"]
FlagSource = Literal["enrolment", "update", "import", "batch"]
RunStatus = Literal["queued", "running", "done", "failed"]
Decision = Literal["not_duplicate", "duplicate"]
DuplicateAction = Literal["merge", "exit"]

OPEN: FlagStatus = "open"
RESOLVED: FlagStatus = "resolved"

NameLevel = Literal["exact", "swapped", "phonetic", "close", "one_part", "different"]
DateLevel = Literal["exact", "near", "same_year", "different"]
SexLevel = Literal["same", "different"]
IdentifierLevel = Literal["same", "different", "none"]
LocationLevel = Literal["same", "same_parent", "same_region", "different"]

# Weights in bits (log2 of the likelihood ratio).
NAME_WEIGHTS: Mapping[NameLevel, float] = {
    "exact": 10,
    "swapped": 8,
    "phonetic": 7,
    "close": 5,
    "one_part": 0,
    "different": -8,
}
DATE_WEIGHTS: Mapping[DateLevel, float] = {"exact": 9, "near": 4, "same_year": 1, "different": -6}
SEX_WEIGHTS: Mapping[SexLevel, float] = {"same": 1, "different": -3}
IDENTIFIER_WEIGHTS: Mapping[IdentifierLevel, float] = {"same": 12, "different": -2, "none": 0}
MEMBER_PHONE_WEIGHT = 4.0
LOCATION_WEIGHTS: Mapping[LocationLevel, float] = {
    "same": 3,
    "same_parent": 1,
    "same_region": 0,
    "different": -3,
}
ADDRESS_WEIGHT = 4.0
PHONE_WEIGHT = 6.0
GPS_WEIGHT = 4.0
UNMATCHED_MEMBER_WEIGHT = -3.0
IDENTIFIER_CLASH_WEIGHT = 12.0  # an import's identifier already held by the other household
PRIOR = -15.0

PERSON_MATCH = 8.0  # a member pair weighing at least this is the same person
FLAG_THRESHOLD = 0.5  # a pair scoring at least this is flagged for review
CLOSE_SIMILARITY = 0.88  # Jaro-Winkler of two names spelled a little differently
GPS_NEAR_METRES = 100.0


# --- records -------------------------------------------------------------------------------


@lru_cache(maxsize=200_000)
def fold(value: str) -> str:
    """Case, accents and spacing do not tell names apart: `  Mbógò ` -> `mbogo` (what
    PostgreSQL's `registry_fold` does for the search and blocking keys)."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(stripped.casefold().split())


@dataclass(frozen=True)
class Person:
    """A member as the comparison sees it (names folded once, with their phonetic codes)."""

    member_id: UUID
    given: str
    family: str
    born: date
    sex: str
    relationship: str
    identifiers: frozenset[tuple[str, str]] = frozenset()
    phone: str | None = None
    given_code: str = ""
    family_code: str = ""


def person(
    member_id: UUID,
    given_name: str,
    family_name: str,
    date_of_birth: date,
    sex: str,
    relationship: str,
    identifiers: Iterable[tuple[str, str]] = (),
    phone: str | None = None,
) -> Person:
    given, family = fold(given_name), fold(family_name)
    return Person(
        member_id=member_id,
        given=given,
        family=family,
        born=date_of_birth,
        sex=sex,
        relationship=relationship,
        identifiers=frozenset(identifiers),
        phone=phone,
        given_code=_metaphone(given),
        family_code=_metaphone(family),
    )


@lru_cache(maxsize=200_000)
def _metaphone(name: str) -> str:
    """Names repeat (a registry holds a few thousand distinct ones): each is coded once."""
    return str(jellyfish.metaphone(name))


@dataclass(frozen=True)
class HouseholdRecord:
    household_id: UUID
    location_code: str
    members: tuple[Person, ...]
    status: str = "active"
    address: str | None = None
    phone: str | None = None
    latitude: float | None = None
    longitude: float | None = None


# --- comparing people ----------------------------------------------------------------------

_NAME_ORDER: tuple[NameLevel, ...] = (
    "exact",
    "swapped",
    "phonetic",
    "close",
    "one_part",
    "different",
)
_PART_ORDER = ("exact", "phonetic", "close", "different")


def _part(a: str, a_code: str, b: str, b_code: str) -> str:
    if a == b:
        return "exact"
    if a_code and a_code == b_code:
        return "phonetic"
    if jellyfish.jaro_winkler_similarity(a, b) >= CLOSE_SIMILARITY:
        return "close"
    return "different"


def _combined(first: str, second: str, swapped: bool) -> NameLevel:
    worst = max(_PART_ORDER.index(first), _PART_ORDER.index(second))
    if worst == 0:
        return "swapped" if swapped else "exact"
    if worst < 3:
        return "phonetic" if worst == 1 else "close"
    return (
        "one_part" if min(_PART_ORDER.index(first), _PART_ORDER.index(second)) < 3 else "different"
    )


def compare_names(a: Person, b: Person) -> NameLevel:
    """Given with given and family with family, or crossed (names entered the wrong way
    round); the better of the two. Each part is exact, phonetic (the same Metaphone code: Ph/F,
    Mohamed/Mohammed), close (Jaro-Winkler >= 0.88: a typo) or different."""
    straight = _combined(
        _part(a.given, a.given_code, b.given, b.given_code),
        _part(a.family, a.family_code, b.family, b.family_code),
        swapped=False,
    )
    crossed = _combined(
        _part(a.given, a.given_code, b.family, b.family_code),
        _part(a.family, a.family_code, b.given, b.given_code),
        swapped=True,
    )
    if crossed != "one_part" and _NAME_ORDER.index(crossed) < _NAME_ORDER.index(straight):
        return crossed
    return straight


def compare_dates(a: date, b: date) -> DateLevel:
    """Exact; near (a day apart, the same day a month or a year apart, or day and month
    swapped); the same year; or different."""
    if a == b:
        return "exact"
    if abs((a - b).days) == 1:
        return "near"
    if a.day == b.day and abs((a.year * 12 + a.month) - (b.year * 12 + b.month)) in (1, 12):
        return "near"
    if a.year == b.year and a.day == b.month and a.month == b.day:
        return "near"
    if a.year == b.year:
        return "same_year"
    return "different"


def compare_identifiers(a: Person, b: Person) -> IdentifierLevel:
    """The same value under one scheme: same; values under a shared scheme that all differ:
    different (weakly against: identifiers are often mistyped or reissued); else none."""
    if a.identifiers & b.identifiers:
        return "same"
    schemes_a = {scheme for scheme, _ in a.identifiers}
    if schemes_a & {scheme for scheme, _ in b.identifiers}:
        return "different"
    return "none"


@dataclass(frozen=True)
class PersonComparison:
    member_id: UUID
    other_member_id: UUID
    relationship: str
    other_relationship: str
    name: NameLevel
    birth_date: DateLevel
    sex: SexLevel
    identifier: IdentifierLevel
    phone: bool
    weight: float

    def as_json(self) -> dict[str, Any]:
        return {
            "member_id": str(self.member_id),
            "other_member_id": str(self.other_member_id),
            "relationship": self.relationship,
            "other_relationship": self.other_relationship,
            "name": self.name,
            "birth_date": self.birth_date,
            "sex": self.sex,
            "identifier": self.identifier,
            "phone": "same" if self.phone else None,
            "weight": self.weight,
        }

    def reason(self) -> str:
        text = (
            f"{self.relationship}/{self.other_relationship}: name {self.name}, "
            f"birth date {self.birth_date}, sex {self.sex}"
        )
        if self.identifier != "none":
            text += f", identifier {self.identifier}"
        return text + (", phone same" if self.phone else "")


def compare_people(a: Person, b: Person) -> PersonComparison:
    born = compare_dates(a.born, b.born)
    sex: SexLevel = "same" if a.sex == b.sex else "different"
    identifier = compare_identifiers(a, b)
    phone = a.phone is not None and a.phone == b.phone
    weight = (
        DATE_WEIGHTS[born]
        + SEX_WEIGHTS[sex]
        + IDENTIFIER_WEIGHTS[identifier]
        + (MEMBER_PHONE_WEIGHT if phone else 0.0)
    )
    # Names cost the most to compare: when even exact names could not make the pair the same
    # person, they are not compared (the pair is reported as `different`, never matched).
    name: NameLevel = "different"
    if weight + NAME_WEIGHTS["exact"] >= PERSON_MATCH:
        name = compare_names(a, b)
    weight += NAME_WEIGHTS[name]
    return PersonComparison(
        a.member_id,
        b.member_id,
        a.relationship,
        b.relationship,
        name,
        born,
        sex,
        identifier,
        phone,
        weight,
    )


def match_members(a: Sequence[Person], b: Sequence[Person]) -> list[PersonComparison]:
    """One-to-one pairs of the same person, best first (greedy on weight; ties by position)."""
    same = [
        (comparison, i, j)
        for i, x in enumerate(a)
        for j, y in enumerate(b)
        if (comparison := compare_people(x, y)).weight >= PERSON_MATCH
    ]
    used_a: set[int] = set()
    used_b: set[int] = set()
    matched = []
    for comparison, i, j in sorted(same, key=lambda item: (-item[0].weight, item[1], item[2])):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            matched.append(comparison)
    return matched


# --- comparing households --------------------------------------------------------------------


# The area a blocking key is scoped to: a location code's first three segments (country,
# level 1, level 2: `KE-047-0101` of `KE-047-0101.01.001`), separators read as `-`; the batch
# run cuts it the same way in SQL (duplicates_repository.BATCH_KEYS).
def block_area(code: str) -> str:
    return "-".join(code.replace(".", "-").split("-")[:3])


def areas(code: str) -> list[str]:
    """The areas a location code lies in, outermost first, itself last; a leading country
    prefix (`KE` of `KE-047`: two letters) is no area of the hierarchy."""
    cuts = ancestors_or_self(code)
    if len(cuts) > 1 and len(cuts[0]) == 2 and cuts[0].isalpha():
        return cuts[1:]
    return cuts


def compare_locations(a: str, b: str) -> LocationLevel:
    """The same area; areas with the same parent; the same top-level region; or different."""
    if a == b:
        return "same"
    up_a, up_b = areas(a), areas(b)
    if len(up_a) > 1 and len(up_b) > 1 and up_a[-2] == up_b[-2]:
        return "same_parent"
    if up_a[0] == up_b[0]:
        return "same_region"
    return "different"


def distance_metres(lat_a: float, lon_a: float, lat_b: float, lon_b: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    radius = 6_371_000.0
    phi_a, phi_b = math.radians(lat_a), math.radians(lat_b)
    d_phi, d_lambda = phi_b - phi_a, math.radians(lon_b - lon_a)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi_a) * math.cos(phi_b) * math.sin(d_lambda / 2) ** 2
    return float(2 * radius * math.asin(math.sqrt(h)))


def _phones(household: HouseholdRecord) -> set[str]:
    phones = {member.phone for member in household.members if member.phone}
    return phones | ({household.phone} if household.phone else set())


@dataclass(frozen=True)
class Comparison:
    """Two households compared: the weight and score, the matched members, and each field's
    agreement. Holds ids and agreement levels only, never a name or an identifier."""

    household_id: UUID
    other_household_id: UUID
    members: tuple[PersonComparison, ...]
    unmatched: int
    location: LocationLevel
    address: bool
    phone: bool
    gps: bool
    identifier_clash: tuple[str, ...]
    weight: float
    score: float

    @property
    def flagged(self) -> bool:
        """Scores enough, or an import's identifier is held by the other household (always
        for a person to see: a duplicate, or an identifier entered wrong)."""
        return self.score >= FLAG_THRESHOLD or bool(self.identifier_clash)

    def reasons(self) -> list[str]:
        """Short reasons, for events and lists (no personal data)."""
        reasons = [f"identifier clash: {scheme}" for scheme in self.identifier_clash]
        reasons += [member.reason() for member in self.members]
        if self.unmatched:
            reasons.append(f"unmatched members: {self.unmatched}")
        reasons.append(f"location {self.location}")
        reasons += [
            text
            for present, text in (
                (self.address, "address same"),
                (self.phone, "phone same"),
                (self.gps, f"gps within {GPS_NEAR_METRES:.0f} m"),
            )
            if present
        ]
        return reasons

    def as_json(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "score": self.score,
            "members": [member.as_json() for member in self.members],
            "unmatched_members": self.unmatched,
            "location": self.location,
            "address": "same" if self.address else None,
            "phone": "same" if self.phone else None,
            "gps": "near" if self.gps else None,
            "identifier_clash": list(self.identifier_clash),
        }


def score_of(weight: float) -> float:
    exponent = -(weight + PRIOR)
    if exponent > 60:
        return 0.0
    return 1.0 / (1.0 + math.pow(2.0, exponent))


def compare_households(
    a: HouseholdRecord, b: HouseholdRecord, identifier_clash: Sequence[str] = ()
) -> Comparison:
    """`identifier_clash`: schemes of an identifier that an import brought for one of them
    and the other already holds (the import could not store it: the database keeps one
    holder per identifier)."""
    position = {member.member_id: index for index, member in enumerate(a.members)}
    members = sorted(match_members(a.members, b.members), key=lambda m: position[m.member_id])
    unmatched = min(len(a.members), len(b.members)) - len(members)
    location = compare_locations(a.location_code, b.location_code)
    address = bool(a.address) and fold(a.address or "") == fold(b.address or "")
    phone = bool(_phones(a) & _phones(b))
    gps = (
        a.latitude is not None
        and a.longitude is not None
        and b.latitude is not None
        and b.longitude is not None
        and distance_metres(a.latitude, a.longitude, b.latitude, b.longitude) <= GPS_NEAR_METRES
    )
    weight = (
        sum(member.weight for member in members)
        + unmatched * UNMATCHED_MEMBER_WEIGHT
        + LOCATION_WEIGHTS[location]
        + (ADDRESS_WEIGHT if address else 0.0)
        + (PHONE_WEIGHT if phone else 0.0)
        + (GPS_WEIGHT if gps else 0.0)
        + IDENTIFIER_CLASH_WEIGHT * len(identifier_clash)
    )
    return Comparison(
        household_id=a.household_id,
        other_household_id=b.household_id,
        members=tuple(members),
        unmatched=unmatched,
        location=location,
        address=address,
        phone=phone,
        gps=gps,
        identifier_clash=tuple(identifier_clash),
        weight=weight,
        score=score_of(weight),
    )


def ordered_pair(a: UUID, b: UUID) -> tuple[UUID, UUID]:
    """A flag's households in id order (the older first: ids are uuid7)."""
    return (a, b) if a < b else (b, a)


# --- flags and decisions -------------------------------------------------------------------


def check_decidable(status: FlagStatus, decided_by: str | None) -> None:
    """Only an open flag can be decided; a flag decided meanwhile is a 409 naming who."""
    if status != OPEN:
        by = f" by {decided_by}" if decided_by else ""
        raise RuleBroken(
            409, "flag-decided", "decision", f"the flag is {status} already{by}: reload it"
        )


@dataclass(frozen=True)
class DecisionRequest:
    decision: Decision
    action: DuplicateAction | None
    surviving_household_id: UUID | None


def outcome(
    request: DecisionRequest, household_id: UUID, other_household_id: UUID
) -> tuple[FlagStatus, UUID | None, UUID | None]:
    """The flag's new status, the surviving household and the one that leaves (None, None
    for not_duplicate); refuses a request that does not say what to do with a duplicate."""
    if request.decision == "not_duplicate":
        if request.action is not None or request.surviving_household_id is not None:
            raise RuleBroken(
                422,
                "decision-shape",
                "action",
                "not_duplicate takes no action and no surviving household",
            )
        return "not_duplicate", None, None
    if request.action is None:
        raise RuleBroken(422, "decision-shape", "action", "a duplicate needs action merge or exit")
    survivor = request.surviving_household_id or household_id
    if survivor not in (household_id, other_household_id):
        raise RuleBroken(
            422,
            "decision-shape",
            "surviving_household_id",
            "the surviving household must be one of the flag's two households",
        )
    leaving = other_household_id if survivor == household_id else household_id
    status: FlagStatus = "duplicate_merged" if request.action == "merge" else "duplicate_exited"
    return status, survivor, leaving


# --- merging -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergePlan:
    """The surviving household's new draft, and what it took from the other (for the note)."""

    draft: HouseholdDraft
    members_added: int
    identifiers_added: int
    fields_taken: tuple[str, ...] = field(default=())


def merge(
    survivor: HouseholdDraft,
    survivor_ids: Sequence[UUID],
    other: HouseholdDraft,
    other_ids: Sequence[UUID],
    matched: Iterable[tuple[UUID, UUID]],
    max_members: int,
) -> MergePlan:
    """Merges `other` into `survivor` (drafts with their members' ids, in order):

    - the survivor keeps its members, roles and fields;
    - a member of the other matched to one of the survivor's (`matched`: survivor member id,
      other member id) adds the identifiers of schemes the survivor's member lacks, and its
      phone when the survivor's member has none;
    - every other member of the other joins the survivor with its data and no role; its head
      joins as `other_relative`;
    - the survivor's address, phone and GPS when it has them, else the other's; eligibility
      attributes the survivor lacks are taken from the other.
    Refused (409) when the merged household would have more than `max_members` members."""
    by_other = {other_member: mine for mine, other_member in matched}
    position = {member_id: index for index, member_id in enumerate(survivor_ids)}
    members = list(survivor.members)
    added = identifiers_added = 0
    taken_values = {(i.scheme, i.value) for m in members for i in m.identifiers}
    for other_id, member in zip(other_ids, other.members, strict=True):
        mine = by_other.get(other_id)
        if mine is not None and mine in position:
            index = position[mine]
            kept = members[index]
            schemes = {identifier.scheme for identifier in kept.identifiers}
            extra = tuple(
                identifier
                for identifier in member.identifiers
                if identifier.scheme not in schemes
                and (identifier.scheme, identifier.value) not in taken_values
            )
            identifiers_added += len(extra)
            taken_values |= {(i.scheme, i.value) for i in extra}
            members[index] = replace(
                kept,
                identifiers=kept.identifiers + extra,
                phone=kept.phone or member.phone,
            )
            continue
        fresh = tuple(
            identifier
            for identifier in member.identifiers
            if (identifier.scheme, identifier.value) not in taken_values
        )
        taken_values |= {(i.scheme, i.value) for i in fresh}
        members.append(
            replace(
                member,
                relationship="other_relative"
                if member.relationship == "head"
                else member.relationship,
                is_primary_recipient=False,
                identifiers=fresh,
            )
        )
        added += 1
    if len(members) > max_members:
        raise RuleBroken(
            409,
            "merge-too-large",
            "action",
            f"the merged household would have {len(members)} members, more than "
            f"{max_members}: exit the other household instead, or remove members first",
        )
    taken = [
        name
        for name, mine, theirs in (
            ("address", survivor.address, other.address),
            ("phone", survivor.phone, other.phone),
            ("gps", survivor.latitude, other.latitude),
        )
        if mine is None and theirs is not None
    ]
    gps_from_other = "gps" in taken
    attributes = dict(other.eligibility_attributes) | dict(survivor.eligibility_attributes)
    draft = replace(
        survivor,
        members=tuple(members),
        address=survivor.address if survivor.address is not None else other.address,
        phone=survivor.phone if survivor.phone is not None else other.phone,
        latitude=other.latitude if gps_from_other else survivor.latitude,
        longitude=other.longitude if gps_from_other else survivor.longitude,
        eligibility_attributes=attributes,
    )
    return MergePlan(draft, added, identifiers_added, tuple(taken))


def member_draft(
    given_name: str,
    family_name: str,
    sex: str,
    date_of_birth: date,
    relationship: str,
    *,
    disability: bool,
    phone: str | None,
    is_primary_recipient: bool,
    identifiers: Iterable[tuple[str, str]],
) -> MemberDraft:
    return MemberDraft(
        given_name=given_name,
        family_name=family_name,
        sex=sex,
        date_of_birth=date_of_birth,
        relationship=relationship,
        disability=disability,
        phone=phone,
        is_primary_recipient=is_primary_recipient,
        identifiers=tuple(IdentifierDraft(scheme, value) for scheme, value in identifiers),
    )
