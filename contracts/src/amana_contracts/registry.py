"""Events published by the registry service on `registry.events`."""

from __future__ import annotations

from datetime import date
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from amana_contracts.base import EventData

Sex = Literal["female", "male", "other", "unknown"]
Relationship = Literal[
    "head", "spouse", "child", "parent", "sibling", "grandchild", "other_relative", "non_relative"
]


class MemberV1(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    member_id: UUID
    is_head: bool
    relationship: Relationship
    sex: Sex
    date_of_birth: date
    disability: bool = False


class HouseholdEnrolledV1(EventData):
    """A household was enrolled. Carries what payroll needs for eligibility and targeting;
    names and identifiers stay in the registry."""

    service = "registry"
    event_name = "HouseholdEnrolled"
    event_version = 1

    household_id: UUID
    household_number: str = Field(description="Human-readable household number")
    location_code: str = Field(description="Administrative area code where the household lives")
    status: Literal["active", "under_review", "suspended", "exited"]
    enrolled_at: str = Field(description="RFC 3339 UTC timestamp of enrolment")
    size: int = Field(ge=1)
    members: list[MemberV1]

    def subject(self) -> str:
        return str(self.household_id)
