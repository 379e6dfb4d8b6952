"""HL7 FHIR R4 for households: what a Group (the household), its Patients (the members) and
RelatedPersons (a member's relationship to the head) mean to the registry, and how a household
is written back as a Group and Patients. Pure: no HTTP, no session.

Resources are parsed and validated with fhir.resources. fhir.resources carries FHIR R4
(4.0.1) only in its versions before 7, which are built on pydantic 1; from 7 on it carries R5
and R4B (4.3.0) as `fhir.resources.R4B`, whose Group, Patient, RelatedPerson, Bundle and
OperationOutcome are R4's (R4B changed none of their elements). openIMIS's FHIR R4 module uses
the same package.

Two shapes are read (README, "FHIR mapping"): Amana's own (the extensions below, identifiers
by system per scheme) and openIMIS's family and insuree documents (its identifier type codes,
`patient-is-head`, `group-address` with `address-location-reference`, and the older
`openimis.atlassian.net` extension URLs), as well as plain R4 (v2-0203 identifier types,
v3-RoleCode relationships on a RelatedPerson that the member's Patient.link points to).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.group import Group
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.relatedperson import RelatedPerson
from pydantic import ValidationError

from registry.cleaning import (
    Change,
    HouseholdDraft,
    IdentifierDraft,
    LocationHierarchy,
    MemberDraft,
    Refusal,
)

AMANA = "https://amana.dev/fhir"
AMANA_EXTENSION = f"{AMANA}/StructureDefinition"
IDENTIFIER_SYSTEM = f"{AMANA}/identifier"  # + "/<scheme>" for a member's identifier
HOUSEHOLD_NUMBER_SYSTEM = f"{AMANA}/identifier/household-number"
EXT_LOCATION = f"{AMANA_EXTENSION}/location-code"
EXT_ADDRESS = f"{AMANA_EXTENSION}/household-address"
EXT_PHONE = f"{AMANA_EXTENSION}/household-phone"
EXT_STATUS = f"{AMANA_EXTENSION}/household-status"
EXT_ATTRIBUTE = f"{AMANA_EXTENSION}/eligibility-attribute"
EXT_RELATIONSHIP = f"{AMANA_EXTENSION}/household-relationship"
EXT_PRIMARY_RECIPIENT = f"{AMANA_EXTENSION}/primary-recipient"
EXT_DISABILITY = f"{AMANA_EXTENSION}/disability"
GEOLOCATION = "http://hl7.org/fhir/StructureDefinition/geolocation"

OPENIMIS = "https://openimis.github.io/openimis_fhir_r4_ig"
OPENIMIS_IDENTIFIERS = f"{OPENIMIS}/CodeSystem/openimis-identifiers"
OPENIMIS_IS_HEAD = (
    f"{OPENIMIS}/StructureDefinition/patient-is-head",
    "https://openimis.atlassian.net/wiki/spaces/OP/pages/960069653/isHead",
)
OPENIMIS_GROUP_ADDRESS = f"{OPENIMIS}/StructureDefinition/group-address"
OPENIMIS_LOCATION_REFERENCE = f"{OPENIMIS}/StructureDefinition/address-location-reference"
V2_IDENTIFIER_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0203"
V3_ROLE_CODES = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

# Identifier type codes -> scheme: openIMIS's own code system, then HL7 v2-0203 (openIMIS's
# older releases used v2-0203's SB for the insurance number and PPN for the passport).
OPENIMIS_SCHEMES = {"Code": "social_registry_id", "Passport": "passport"}
V2_SCHEMES = {
    "NI": "national_id",
    "NN": "national_id",
    "PPN": "passport",
    "BCT": "birth_certificate",
    "SB": "social_registry_id",
}
ROLE_RELATIONSHIPS = {
    "ONESELF": "head",
    **dict.fromkeys(("SPS", "WIFE", "HUSB", "DOMPART"), "spouse"),
    **dict.fromkeys(
        ("CHILD", "SON", "DAU", "NCHILD", "STPCHLD", "CHLDADOPT", "CHLDFOST", "CHLDINLAW"),
        "child",
    ),
    **dict.fromkeys(("PRN", "MTH", "FTH", "NPRN", "STPPRN", "PRNINLAW"), "parent"),
    **dict.fromkeys(("SIB", "BRO", "SIS", "NSIB", "HSIB", "STPSIB"), "sibling"),
    **dict.fromkeys(("GRNDCHILD", "GRNDSON", "GRNDDAU"), "grandchild"),
    **dict.fromkeys(
        ("FAMMEM", "EXT", "AUNT", "UNCLE", "COUSN", "NIECE", "NEPHEW", "GRPRN", "INLAW"),
        "other_relative",
    ),
    **dict.fromkeys(("FRND", "NBOR", "ROOM"), "non_relative"),
}
RELATIONSHIPS = frozenset(
    ("head", "spouse", "child", "parent", "sibling", "grandchild", "other_relative", "non_relative")
)
SEXES = frozenset(("female", "male", "other", "unknown"))
ACCEPTED_TYPES = ("Group", "Patient", "RelatedPerson")
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MODELS: dict[str, Any] = {"Group": Group, "Patient": Patient, "RelatedPerson": RelatedPerson}


@dataclass
class MappedHousehold:
    """A Group read as a household: the draft (None when refused), the keys other systems
    know it by, what the reading changed or refused (fields named as FHIR paths), the member
    references it took, and how to name a cleaning field (`members.0.date_of_birth`) in FHIR
    terms (`Patient/p1.birthDate`)."""

    label: str
    draft: HouseholdDraft | None = None
    keys: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # the member references, in order
    related: list[str] = field(default_factory=list)  # RelatedPerson references taken
    field_names: dict[str, str] = field(default_factory=dict)

    def refuse(self, field_name: str, code: str, message: str) -> None:
        self.refusals.append(Refusal(field_name, code, message))

    def fhir_field(self, name: str) -> str:
        """A cleaning field name in FHIR terms, the longest known prefix replaced."""
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            if prefix in self.field_names:
                return ".".join([self.field_names[prefix], *parts[end:]])
        return f"{self.label}.{name}"


def label(resource: Mapping[str, Any]) -> str:
    """`Patient/p1` (or the type alone when the resource has no id)."""
    kind = str(resource.get("resourceType") or "resource")
    return f"{kind}/{resource['id']}" if isinstance(resource.get("id"), str) else kind


def validation_refusals(resource: Mapping[str, Any], where: str | None = None) -> list[Refusal]:
    """What fhir.resources finds wrong with a resource (wrong type, a missing required
    element, a malformed value), each naming its element; empty when it is valid R4."""
    where = where or label(resource)
    kind = resource.get("resourceType")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return [
            Refusal(
                f"{where}.resourceType",
                "wrong-resource-type",
                f"resourceType {kind!r} is not accepted here: one of {', '.join(ACCEPTED_TYPES)}",
            )
        ]
    try:
        model.model_validate(resource)
    except ValidationError as error:
        return [
            Refusal(
                ".".join([where, *(str(part) for part in item["loc"])]),
                "invalid-fhir",
                str(item["msg"]).splitlines()[0][:300],
            )
            for item in error.errors()
        ]
    return []


# --- reading --------------------------------------------------------------------------------


Resolver = Callable[[str], Mapping[str, Any] | None]


def read_household(
    group: Mapping[str, Any], resolve: Resolver, locations: LocationHierarchy
) -> MappedHousehold:
    """Reads a validated Group and the resources its references name (`resolve` answers the
    resource a reference names, or None) into a household draft. A broken or missing
    reference, a member that is not a Patient, a Patient without a birth date or a
    relationship to the head are refusals naming the element."""
    mapped = MappedHousehold(label(group))
    where = mapped.label
    if group.get("type") != "person":
        mapped.refuse(f"{where}.type", "not-a-household", "a household Group has type 'person'")
    mapped.keys = _group_keys(group)
    members: list[MemberDraft] = []
    entries = group.get("member") or []
    if not entries:
        mapped.refuse(f"{where}.member", "no-members", "a household Group needs its members")
    heads = [_is_head_by_extension(resolve(_reference(entry)) or {}) for entry in entries]
    for index, entry in enumerate(entries):
        member = _read_member(mapped, index, entry, resolve, any(heads))
        if member is not None:
            members.append(member)
    location = _location(group, [resolve(ref) or {} for ref in mapped.members], locations)
    mapped.field_names.update(
        {
            "location_code": f"{where}.extension[{EXT_LOCATION}]",
            "address": f"{where}.extension[{EXT_ADDRESS}].valueAddress.text",
            "phone": f"{where}.extension[{EXT_PHONE}]",
            "eligibility_attributes": f"{where}.extension[{EXT_ATTRIBUTE}]",
            "members": f"{where}.member",
        }
    )
    if location is None:
        mapped.refuse(
            mapped.field_names["location_code"],
            "location-required",
            "no location code: give the location-code extension, or an openIMIS group-address "
            "whose location reference or postal code is a code of the hierarchy",
        )
    if mapped.refusals:
        return mapped
    address, latitude, longitude = _address(group)
    mapped.draft = HouseholdDraft(
        location_code=location or "",
        members=tuple(members),
        address=address,
        phone=_extension_value(group, EXT_PHONE, "valueString"),
        latitude=latitude,
        longitude=longitude,
        eligibility_attributes=_attributes(group),
    )
    return mapped


def member_references(group: Mapping[str, Any]) -> list[str]:
    """The references of a Group's members, whatever shape it came in (fhir.resources says
    what is wrong with it)."""
    members = group.get("member")
    return [
        str(entity.get("reference") or "")
        for member in (members if isinstance(members, list) else [])
        if isinstance(member, dict)
        for entity in [member.get("entity")]
        if isinstance(entity, dict)
    ]


def _reference(entry: Mapping[str, Any]) -> str:
    entity = entry.get("entity") or {}
    return str(entity.get("reference") or "")


def _group_keys(group: Mapping[str, Any]) -> list[str]:
    keys = [f"Group/{group['id']}"] if isinstance(group.get("id"), str) else []
    for identifier in group.get("identifier") or []:
        value = identifier.get("value")
        if not value:
            continue
        kind = _type_code(identifier)
        system = identifier.get("system") or (f"{OPENIMIS_IDENTIFIERS}#{kind}" if kind else "")
        keys.append(f"{system}|{value}")
    return keys


def household_number_of(group: Mapping[str, Any]) -> str | None:
    """The Amana household number a Group carries (one we exported, sent back)."""
    for identifier in group.get("identifier") or []:
        if identifier.get("system") == HOUSEHOLD_NUMBER_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
    return None


def _read_member(
    mapped: MappedHousehold,
    index: int,
    entry: Mapping[str, Any],
    resolve: Resolver,
    heads_marked: bool,
) -> MemberDraft | None:
    where = f"{mapped.label}.member[{index}].entity"
    reference = _reference(entry)
    if not reference.startswith("Patient/") and not reference.startswith("urn:uuid:"):
        mapped.refuse(where, "not-a-patient", f"a member is a Patient, not {reference!r}")
        return None
    patient = resolve(reference)
    if patient is None or patient.get("resourceType") != "Patient":
        mapped.refuse(where, "broken-reference", f"{reference} is not in this import")
        return None
    if reference in mapped.members:
        mapped.refuse(where, "repeated-member", f"{reference} is a member twice")
        return None
    mapped.members.append(reference)
    me = label(patient)
    prefix = f"members.{len(mapped.members) - 1}"
    mapped.field_names.update(
        {
            prefix: me,
            f"{prefix}.given_name": f"{me}.name.given",
            f"{prefix}.family_name": f"{me}.name.family",
            f"{prefix}.date_of_birth": f"{me}.birthDate",
            f"{prefix}.sex": f"{me}.gender",
            f"{prefix}.phone": f"{me}.telecom",
            f"{prefix}.relationship": f"{mapped.label}.member[{index}]",
        }
    )
    given, family = _names(patient)
    born = patient.get("birthDate")
    relationship = _relationship(mapped, entry, patient, resolve, heads_marked, prefix)
    if not given or not family:
        mapped.refuse(f"{me}.name", "name-required", "a member needs a given and a family name")
    if not isinstance(born, str) or not _FULL_DATE.fullmatch(born):
        mapped.refuse(f"{me}.birthDate", "birth-date-required", "a full birth date is required")
    if not given or not family or not isinstance(born, str) or not _FULL_DATE.fullmatch(born):
        return None
    if relationship is None:
        return None
    sex = patient.get("gender")
    if sex not in SEXES:
        mapped.changes.append(Change(f"{me}.gender", sex, "unknown", "fhir-gender-absent"))
        sex = "unknown"
    identifiers = _identifiers(mapped, patient, prefix)
    return MemberDraft(
        given_name=given,
        family_name=family,
        sex=str(sex),
        date_of_birth=date.fromisoformat(born),
        relationship=relationship,
        disability=_extension_value(patient, EXT_DISABILITY, "valueBoolean") is True,
        phone=_phone(patient),
        is_primary_recipient=_extension_value(entry, EXT_PRIMARY_RECIPIENT, "valueBoolean") is True,
        identifiers=identifiers,
    )


def _names(patient: Mapping[str, Any]) -> tuple[str, str]:
    names = patient.get("name") or []
    chosen = next((n for n in names if n.get("use") in ("official", "usual")), None)
    name = chosen or (names[0] if names else {})
    return " ".join(name.get("given") or []), str(name.get("family") or "")


def _relationship(
    mapped: MappedHousehold,
    entry: Mapping[str, Any],
    patient: Mapping[str, Any],
    resolve: Resolver,
    heads_marked: bool,
    prefix: str,
) -> str | None:
    """The member's relationship to the head: Amana's Group.member extension, openIMIS's
    patient-is-head, or a RelatedPerson the Patient links to (its v3-RoleCode)."""
    where = mapped.field_names[f"{prefix}.relationship"]
    code = _extension_value(entry, EXT_RELATIONSHIP, "valueCode")
    if code is not None:
        if code not in RELATIONSHIPS:
            mapped.refuse(where, "unknown-relationship", f"{code!r} is not a relationship")
            return None
        return str(code)
    if _is_head_by_extension(patient):
        return "head"
    for link in patient.get("link") or []:
        other = str((link.get("other") or {}).get("reference") or "")
        if not other.startswith("RelatedPerson/") and not other.startswith("urn:uuid:"):
            continue
        related = resolve(other)
        if related is None or related.get("resourceType") != "RelatedPerson":
            mapped.refuse(f"{label(patient)}.link", "broken-reference", f"{other} is not here")
            return None
        mapped.related.append(other)
        return _role(mapped, related)
    if heads_marked:  # openIMIS sends no relationship for many members of a family
        mapped.changes.append(Change(where, None, "other_relative", "relationship-defaulted"))
        return "other_relative"
    mapped.refuse(
        where,
        "relationship-required",
        "no relationship to the head: the household-relationship extension, openIMIS's "
        "patient-is-head, or a RelatedPerson linked from Patient.link",
    )
    return None


def _role(mapped: MappedHousehold, related: Mapping[str, Any]) -> str | None:
    for concept in related.get("relationship") or []:
        for coding in concept.get("coding") or []:
            relationship = ROLE_RELATIONSHIPS.get(str(coding.get("code")))
            if relationship is not None:
                return relationship
    mapped.refuse(
        f"{label(related)}.relationship",
        "unknown-relationship",
        "no v3-RoleCode this registry knows (CHILD, SPS, PRN, SIB, GRNDCHILD, ...)",
    )
    return None


def _is_head_by_extension(patient: Mapping[str, Any]) -> bool:
    return any(
        extension.get("url") in OPENIMIS_IS_HEAD and extension.get("valueBoolean") is True
        for extension in patient.get("extension") or []
    )


def _identifiers(
    mapped: MappedHousehold, patient: Mapping[str, Any], prefix: str
) -> tuple[IdentifierDraft, ...]:
    found: list[IdentifierDraft] = []
    for position, identifier in enumerate(patient.get("identifier") or []):
        scheme = _scheme(identifier)
        value = identifier.get("value")
        if scheme is None or not isinstance(value, str):
            continue
        if any(existing.scheme == scheme for existing in found):
            continue  # one per scheme: the first
        mapped.field_names[f"{prefix}.identifiers.{len(found)}"] = (
            f"{label(patient)}.identifier[{position}]"
        )
        found.append(IdentifierDraft(scheme, value))
    return tuple(found)


def _scheme(identifier: Mapping[str, Any]) -> str | None:
    system = str(identifier.get("system") or "")
    if system.startswith(f"{IDENTIFIER_SYSTEM}/"):
        scheme = system.removeprefix(f"{IDENTIFIER_SYSTEM}/")
        return scheme if scheme in SCHEMES else None
    for coding in (identifier.get("type") or {}).get("coding") or []:
        code = str(coding.get("code"))
        if coding.get("system") == OPENIMIS_IDENTIFIERS and code in OPENIMIS_SCHEMES:
            return OPENIMIS_SCHEMES[code]
        if code in V2_SCHEMES or code.startswith("NN"):
            return V2_SCHEMES.get(code, "national_id")
    return None


def _type_code(identifier: Mapping[str, Any]) -> str | None:
    for coding in (identifier.get("type") or {}).get("coding") or []:
        if coding.get("code"):
            return str(coding["code"])
    return None


SCHEMES = frozenset(
    ("national_id", "passport", "birth_certificate", "voter_id", "social_registry_id", "other")
)


def _phone(patient: Mapping[str, Any]) -> str | None:
    for telecom in patient.get("telecom") or []:
        if telecom.get("system") in ("phone", "sms") and telecom.get("value"):
            return str(telecom["value"])
    return None


def _extension_value(resource: Mapping[str, Any], url: str, key: str) -> Any:
    for extension in resource.get("extension") or []:
        if extension.get("url") == url:
            return extension.get(key)
    return None


def _household_address(group: Mapping[str, Any]) -> Mapping[str, Any]:
    for url in (EXT_ADDRESS, OPENIMIS_GROUP_ADDRESS):
        address = _extension_value(group, url, "valueAddress")
        if isinstance(address, Mapping):
            return address
    return {}


def _location(
    group: Mapping[str, Any],
    patients: Sequence[Mapping[str, Any]],
    locations: LocationHierarchy,
) -> str | None:
    """Amana's location-code extension; else a code of the hierarchy in an openIMIS address
    (the location reference `Location/<code>` or its Code identifier, or the postal code, which
    openIMIS fills with the location's code), the Group's first, then the members'."""
    code = _extension_value(group, EXT_LOCATION, "valueCode")
    if isinstance(code, str):
        return code
    addresses = [_household_address(group)] + [
        address for patient in patients for address in patient.get("address") or []
    ]
    for address in addresses:
        for candidate in _address_codes(address):
            if candidate.upper() in locations:
                return candidate
    return None


def _address_codes(address: Mapping[str, Any]) -> list[str]:
    candidates = []
    for extension in address.get("extension") or []:
        if extension.get("url") == OPENIMIS_LOCATION_REFERENCE:
            reference = extension.get("valueReference") or {}
            candidates.append(str(reference.get("reference") or "").removeprefix("Location/"))
            candidates.append(str((reference.get("identifier") or {}).get("value") or ""))
    candidates.append(str(address.get("postalCode") or ""))
    return [candidate for candidate in candidates if candidate]


def _address(group: Mapping[str, Any]) -> tuple[str | None, float | None, float | None]:
    address = _household_address(group)
    text = address.get("text")
    latitude = longitude = None
    for extension in address.get("extension") or []:
        if extension.get("url") == GEOLOCATION:
            parts = {e.get("url"): e.get("valueDecimal") for e in extension.get("extension") or []}
            latitude, longitude = parts.get("latitude"), parts.get("longitude")
    if latitude is None or longitude is None:
        latitude = longitude = None
    return (str(text) if text else None), _number(latitude), _number(longitude)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _attributes(group: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for extension in group.get("extension") or []:
        if extension.get("url") != EXT_ATTRIBUTE:
            continue
        for item in extension.get("extension") or []:
            for key in ("valueBoolean", "valueInteger", "valueDecimal", "valueString"):
                if key in item:
                    attributes[str(item.get("url"))] = item[key]
    return attributes


# --- writing --------------------------------------------------------------------------------


def instant(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def group_resource(household: Any) -> dict[str, Any]:
    """A household (the ORM row with its members) as an R4 Group of its Patients."""
    extensions: list[dict[str, Any]] = [
        {"url": EXT_LOCATION, "valueCode": household.location_code},
        {"url": EXT_STATUS, "valueCode": household.status},
    ]
    address: dict[str, Any] = {
        "use": "home",
        "type": "physical",
        "postalCode": household.location_code,
    }
    if household.address:
        address["text"] = household.address
    if household.latitude is not None and household.longitude is not None:
        address["extension"] = [
            {
                "url": GEOLOCATION,
                "extension": [
                    {"url": "latitude", "valueDecimal": household.latitude},
                    {"url": "longitude", "valueDecimal": household.longitude},
                ],
            }
        ]
    extensions.append({"url": EXT_ADDRESS, "valueAddress": address})
    if household.phone:
        extensions.append({"url": EXT_PHONE, "valueString": household.phone})
    attributes = [
        attribute_extension(name, value) for name, value in household.eligibility_attributes.items()
    ]
    if attributes:
        extensions.append({"url": EXT_ATTRIBUTE, "extension": attributes})
    return {
        "resourceType": "Group",
        "id": str(household.id),
        "meta": {"versionId": str(household.version), "lastUpdated": instant(household.updated_at)},
        "extension": extensions,
        "identifier": [{"system": HOUSEHOLD_NUMBER_SYSTEM, "value": household.household_number}],
        "active": household.status in ("active", "under_review"),
        "type": "person",
        "actual": True,
        "quantity": len(household.members),
        "member": [
            {
                "extension": [
                    {"url": EXT_RELATIONSHIP, "valueCode": member.relationship},
                    {"url": EXT_PRIMARY_RECIPIENT, "valueBoolean": member.is_primary_recipient},
                ],
                "entity": {"reference": f"Patient/{member.id}"},
            }
            for member in household.members
        ],
    }


def attribute_extension(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"url": name, "valueBoolean": value}
    if isinstance(value, int):
        return {"url": name, "valueInteger": value}
    if isinstance(value, float):
        return {"url": name, "valueDecimal": value}
    return {"url": name, "valueString": str(value)}


def patient_resource(member: Any, household: Any) -> dict[str, Any]:
    """A member as an R4 Patient; its household is the Group that lists it."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(member.id),
        "meta": {"versionId": str(household.version), "lastUpdated": instant(household.updated_at)},
        "extension": [{"url": EXT_DISABILITY, "valueBoolean": member.disability}],
        "identifier": [
            {"system": f"{IDENTIFIER_SYSTEM}/{identifier.scheme}", "value": identifier.value}
            for identifier in member.identifiers
        ],
        "active": household.status != "exited",
        "name": [
            {"use": "official", "family": member.family_name, "given": member.given_name.split(" ")}
        ],
        "gender": member.sex,
        "birthDate": member.date_of_birth.isoformat(),
    }
    if member.phone:
        resource["telecom"] = [{"system": "phone", "value": member.phone}]
    if not resource["identifier"]:
        del resource["identifier"]
    return resource
