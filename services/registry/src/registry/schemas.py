"""Request and response bodies of the registry API.

Request bodies check shapes and bounds; what a value means (a valid phone, a known location,
a check digit, the household's own rules) is checked by the cleaning in `cleaning.py`, which
the imports share, and every refusal names its field.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from amana_common.validation import (
    CurrencyCode,
    Date,
    Id,
    RequestBody,
    Text,
    at_most_one_each,
    exactly_one,
)
from amana_contracts.provider import Mechanism
from amana_contracts.registry import (
    AccountKind,
    HouseholdStatus,
    IdentifierScheme,
    Relationship,
    Sex,
)
from registry.cleaning import (
    AccountDraft,
    HouseholdDraft,
    IdentifierDraft,
    MemberDraft,
)

MAX_MEMBERS = 50
MAX_ATTRIBUTES = 50

# Text is bounded and refused control characters here; the cleaning trims, normalises and
# applies the real limits and rules.
RawName = Annotated[str, Text(min_length=1, max_length=200)]
RawText = Annotated[str, Text(min_length=1, max_length=1000, multiline=True)]
RawPhone = Annotated[str, Text(min_length=1, max_length=32)]
RawCode = Annotated[str, Text(min_length=1, max_length=64)]
Reason = Annotated[str, Text(min_length=1, max_length=500)]
OperatorStatus = Literal["active", "suspended", "exited"]
# An attribute's text is checked for control characters as the cleaning checks it (LF only).
RawAttributeValue = bool | int | float | Annotated[str, Text(multiline=True)]
Attributes = Annotated[dict[RawCode, RawAttributeValue], Field(max_length=MAX_ATTRIBUTES)]


class Strict(RequestBody):
    """Request bodies refuse unknown fields and take JSON types as they are (RequestBody)."""


class GpsIn(Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class IdentifierIn(Strict):
    scheme: IdentifierScheme
    value: RawCode

    def draft(self) -> IdentifierDraft:
        return IdentifierDraft(self.scheme, self.value)


class MemberIn(Strict):
    given_name: RawName
    family_name: RawName
    sex: Sex
    date_of_birth: Date
    relationship: Relationship = Field(description="'head' marks the head of household")
    disability: bool = False
    phone: RawPhone | None = Field(
        default=None, description="Read in the default region without a +; stored as E.164"
    )
    is_primary_recipient: bool = Field(
        default=False, description="Receives the payments; the head when no member is named"
    )
    identifiers: list[IdentifierIn] = Field(
        default_factory=list,
        max_length=6,
        json_schema_extra=at_most_one_each("scheme", get_args(IdentifierScheme)),
    )

    def draft(self) -> MemberDraft:
        return MemberDraft(
            given_name=self.given_name,
            family_name=self.family_name,
            sex=self.sex,
            date_of_birth=self.date_of_birth,
            relationship=self.relationship,
            disability=self.disability,
            phone=self.phone,
            is_primary_recipient=self.is_primary_recipient,
            identifiers=tuple(identifier.draft() for identifier in self.identifiers),
        )


class AccountIn(Strict):
    kind: AccountKind = Field(
        description="msisdn (mobile money), iban or bank_account (bank transfer), card, voucher"
    )
    value: RawCode
    bank_code: RawCode | None = Field(
        default=None, description="bank_account: BIC or national bank/branch code"
    )
    holder_name: RawName | None = None

    def draft(self) -> AccountDraft:
        return AccountDraft(self.kind, self.value, self.bank_code, self.holder_name)


class PaymentPreferenceIn(Strict):
    provider_id: Id
    mechanism: Mechanism
    currency: CurrencyCode | None = Field(
        default=None, description="ISO 4217; the registry's default currency when left out"
    )
    pay_point_id: Id | None = Field(default=None, description="cash_pay_point only")
    account: AccountIn | None = Field(default=None, description="every mechanism but cash")


class HouseholdIn(Strict):
    location_code: RawCode = Field(description="A code of the location hierarchy")
    address: RawText | None = None
    phone: RawPhone | None = None
    gps: GpsIn | None = None
    eligibility_attributes: Attributes = Field(default_factory=dict)
    members: list[MemberIn] = Field(
        min_length=1, max_length=MAX_MEMBERS, json_schema_extra=exactly_one("relationship", "head")
    )
    payment_preference: PaymentPreferenceIn | None = None

    def draft(self) -> HouseholdDraft:
        return HouseholdDraft(
            location_code=self.location_code,
            members=tuple(member.draft() for member in self.members),
            address=self.address,
            phone=self.phone,
            latitude=self.gps.latitude if self.gps else None,
            longitude=self.gps.longitude if self.gps else None,
            eligibility_attributes=self.eligibility_attributes,
        )


class HouseholdPatch(Strict):
    """Only the fields sent change; `null` clears address, phone and gps. The eligibility
    attributes are replaced as a whole."""

    location_code: RawCode | None = None
    address: RawText | None = None
    phone: RawPhone | None = None
    gps: GpsIn | None = None
    eligibility_attributes: Attributes | None = None


class MemberPatch(Strict):
    """Only the fields sent change; `identifiers` replaces the member's identifiers. Making a
    member head needs `former_head_relationship`: what the old head becomes to the new one."""

    given_name: RawName | None = None
    family_name: RawName | None = None
    sex: Sex | None = None
    date_of_birth: Date | None = None
    relationship: Relationship | None = None
    former_head_relationship: Relationship | None = None
    disability: bool | None = None
    phone: RawPhone | None = None
    is_primary_recipient: bool | None = None
    identifiers: list[IdentifierIn] | None = Field(
        default=None,
        max_length=6,
        json_schema_extra=at_most_one_each("scheme", get_args(IdentifierScheme)),
    )


class NewMemberIn(MemberIn):
    former_head_relationship: Relationship | None = Field(
        default=None, description="Required when the new member is the new head"
    )


class StatusIn(Strict):
    status: OperatorStatus = Field(
        description="under_review is set and cleared by the duplicate review, not by hand"
    )
    reason: Reason


# --- responses ------------------------------------------------------------------------------


class IdentifierOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    scheme: IdentifierScheme
    value: str


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    is_head: bool
    is_primary_recipient: bool
    relationship: Relationship
    given_name: str
    family_name: str
    sex: Sex
    date_of_birth: date
    disability: bool
    phone: str | None
    identifiers: list[IdentifierOut]


class AccountOut(BaseModel):
    kind: AccountKind
    value: str
    bank_code: str | None
    holder_name: str | None


class PaymentPreferenceOut(BaseModel):
    provider_id: UUID
    mechanism: Mechanism
    currency: str
    pay_point_id: UUID | None
    account: AccountOut | None
    set_at: datetime


class GpsOut(BaseModel):
    latitude: float
    longitude: float


class HouseholdOut(BaseModel):
    id: UUID
    household_number: str
    location_code: str
    status: HouseholdStatus
    status_reason: str | None
    status_changed_at: datetime
    address: str | None
    phone: str | None
    gps: GpsOut | None
    eligibility_attributes: dict[str, Any]
    duplicate_review_open: bool
    payment_preference: PaymentPreferenceOut | None
    enrolled_at: datetime
    updated_at: datetime
    version: int
    members: list[MemberOut]


class StatusChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    from_status: HouseholdStatus | None
    to_status: HouseholdStatus
    reason: str
    changed_at: datetime
    changed_by: str | None


class FieldChangeOut(BaseModel):
    field: str = Field(description="Path of the field, members and identifiers by id/scheme")
    before: Any
    after: Any


class HouseholdChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    version: int
    action: str
    changed_at: datetime
    changed_by: str | None
    changes: list[FieldChangeOut]


class SearchHit(BaseModel):
    id: UUID = Field(description="The household's id")
    household_number: str
    location_code: str
    status: HouseholdStatus
    member_id: UUID | None = Field(description="The member that matched (none for a number)")
    given_name: str | None
    family_name: str | None
    date_of_birth: date | None
    score: float = Field(description="1 for an exact match; name similarity otherwise")


class SearchResults(BaseModel):
    by: Literal["number", "identifier", "phone", "name"]
    items: list[SearchHit] = Field(description="Best first")
