"""Request and response bodies of the registry API."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from amana_common.validation import LocationCode, Phone, Text
from amana_contracts.registry import HouseholdStatus, Relationship, Sex

IdentifierScheme = Literal[
    "national_id", "passport", "birth_certificate", "voter_id", "social_registry_id", "other"
]
PersonName = Annotated[str, Text(min_length=1, max_length=100)]
Address = Annotated[str, Text(max_length=500, multiline=True)]
IdentifierValue = Annotated[str, Text(pattern=r"^[A-Za-z0-9/-]{1,64}$")]
EARLIEST_BIRTH = date(1900, 1, 1)
MAX_MEMBERS = 50


class Strict(BaseModel):
    """Request bodies refuse unknown fields: a misspelt field must not be silently dropped."""

    model_config = ConfigDict(extra="forbid")


class IdentifierIn(Strict):
    scheme: IdentifierScheme
    value: IdentifierValue


class MemberIn(Strict):
    given_name: PersonName
    family_name: PersonName
    sex: Sex
    date_of_birth: date
    relationship: Relationship = Field(description="'head' marks the head of household")
    disability: bool = False
    identifiers: list[IdentifierIn] = Field(default_factory=list, max_length=6)

    @field_validator("date_of_birth")
    @classmethod
    def _plausible_birth(cls, value: date) -> date:
        if value > datetime.now(UTC).date():
            raise ValueError("date of birth is in the future")
        if value < EARLIEST_BIRTH:
            raise ValueError(f"date of birth is before {EARLIEST_BIRTH.isoformat()}")
        return value

    @field_validator("identifiers")
    @classmethod
    def _one_identifier_per_scheme(cls, value: list[IdentifierIn]) -> list[IdentifierIn]:
        schemes = [identifier.scheme for identifier in value]
        if len(schemes) != len(set(schemes)):
            raise ValueError("a member has at most one identifier per scheme")
        return value


class HouseholdIn(Strict):
    location_code: LocationCode = Field(description="Administrative area code, e.g. KE-047-0101")
    address: Address | None = Field(default=None, description="May span lines")
    phone: Phone | None = Field(default=None, description="E.164 phone number")
    members: list[MemberIn] = Field(min_length=1, max_length=MAX_MEMBERS)

    @field_validator("members")
    @classmethod
    def _exactly_one_head(cls, members: list[MemberIn]) -> list[MemberIn]:
        heads = sum(1 for member in members if member.relationship == "head")
        if heads != 1:
            raise ValueError(f"members must include exactly one head of household, found {heads}")
        return members


class IdentifierOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    scheme: IdentifierScheme
    value: str


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    is_head: bool
    relationship: Relationship
    given_name: str
    family_name: str
    sex: Sex
    date_of_birth: date
    disability: bool
    identifiers: list[IdentifierOut]


class HouseholdOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    household_number: str
    location_code: str
    status: HouseholdStatus
    address: str | None
    phone: str | None
    enrolled_at: datetime
    updated_at: datetime
    version: int
    members: list[MemberOut]
