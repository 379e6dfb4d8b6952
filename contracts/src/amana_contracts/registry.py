"""Events published by the registry service on `registry.events`.

HouseholdEnrolled, HouseholdUpdated and HouseholdStatusChanged all carry the household's whole
snapshot with its `version`: a consumer replaces what it holds with a snapshot of a higher
version and ignores an older or equal one, so replays and reordering change nothing.

Personal data on this topic: members' dates of birth, and the primary recipient's names,
identifier and phone, and the payment account (the payroll and disbursement services need them
to pay; analytics must not store them). Consumers that keep them are listed in the README.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from amana_contracts.base import EventData
from amana_contracts.provider import Mechanism

Sex = Literal["female", "male", "other", "unknown"]
Relationship = Literal[
    "head", "spouse", "child", "parent", "sibling", "grandchild", "other_relative", "non_relative"
]
HouseholdStatus = Literal["active", "under_review", "suspended", "exited"]
IdentifierScheme = Literal[
    "national_id", "passport", "birth_certificate", "voter_id", "social_registry_id", "other"
]
AccountKind = Literal["msisdn", "iban", "bank_account", "card", "voucher"]
AttributeValue = bool | int | float | str
NotPayableReason = Literal[
    "status_not_active",
    "under_review",
    "no_payment_preference",
    "provider_unknown",
    "provider_suspended",
    "mechanism_not_offered",
    "pay_point_unavailable",
    "location_not_served",
    "account_missing",
    "currency_not_offered",  # added: the provider no longer pays in the preference's currency
]
DuplicateDecision = Literal[
    "not_duplicate",
    "duplicate_merged",
    "duplicate_exited",
    "resolved",  # added: a change resolved the clash (no longer scores, or a household exited)
]


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberV1(_Value):
    member_id: UUID
    is_head: bool
    is_primary_recipient: bool = False
    relationship: Relationship
    sex: Sex
    date_of_birth: date
    disability: bool = False


class IdentifierV1(_Value):
    scheme: IdentifierScheme
    value: str


class RecipientV1(_Value):
    """The member who receives the household's payments (personal data)."""

    member_id: UUID
    given_name: str
    family_name: str
    sex: Sex
    date_of_birth: date
    identifier: IdentifierV1 | None = Field(
        default=None, description="The identifier a provider checks at payment (national id first)"
    )
    phone: str | None = Field(default=None, description="E.164")


class AccountV1(_Value):
    """Where a payment goes (personal data): an E.164 mobile number for mobile money, an IBAN or
    a local account number with its bank code for bank transfers, a card or voucher number."""

    kind: AccountKind
    value: str
    bank_code: str | None = Field(default=None, description="BIC or national bank/branch code")
    holder_name: str | None = None


class PaymentPreferenceV1(_Value):
    provider_id: UUID
    mechanism: Mechanism
    pay_point_id: UUID | None = Field(default=None, description="cash_pay_point only")
    account: AccountV1 | None = Field(default=None, description="every mechanism but cash")
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 currency the household is paid in through this provider",
    )


class HouseholdSnapshotV1(EventData):
    """A household as it is now: what payroll needs for eligibility, amounts and payment."""

    service = "registry"

    household_id: UUID
    household_number: str = Field(description="Human-readable household number")
    location_code: str = Field(description="Administrative area code where the household lives")
    status: HouseholdStatus = Field(
        description="`under_review` while a duplicate flag is open: payroll leaves it out"
    )
    enrolled_at: str = Field(description="RFC 3339 UTC timestamp of enrolment")
    size: int = Field(ge=1)
    members: list[MemberV1]
    status_reason: str | None = None
    version: int = Field(default=1, ge=1, description="Increases with every change")
    updated_at: datetime | None = None
    eligibility_attributes: dict[str, AttributeValue] = Field(
        default_factory=dict,
        description="Typed values validated against the deployment's attribute schema",
    )
    primary_recipient: RecipientV1 | None = None
    payment_preference: PaymentPreferenceV1 | None = None
    payable: bool = Field(default=False, description="Whether a payment can be made now")
    not_payable_reasons: list[NotPayableReason] = Field(default_factory=list)
    duplicate_review_open: bool = False

    def subject(self) -> str:
        return str(self.household_id)


class HouseholdEnrolledV1(HouseholdSnapshotV1):
    """A household was enrolled; carries its whole snapshot."""

    event_name = "HouseholdEnrolled"


class HouseholdUpdatedV1(HouseholdSnapshotV1):
    """A household, its members or its payment preference changed; carries its whole snapshot."""

    event_name = "HouseholdUpdated"


class HouseholdStatusChangedV1(HouseholdSnapshotV1):
    """A household's status changed (by an operator, a duplicate flag or a decision); carries
    its whole snapshot and the status it left."""

    event_name = "HouseholdStatusChanged"

    previous_status: HouseholdStatus


class DuplicateFlaggedV1(EventData):
    """Two households were flagged as likely duplicates (no names: ids, score, reasons)."""

    service = "registry"
    event_name = "DuplicateFlagged"

    flag_id: UUID
    household_id: UUID
    other_household_id: UUID
    location_code: str
    score: float = Field(ge=0, le=1)
    reasons: list[str]
    flagged_at: datetime

    def subject(self) -> str:
        return str(self.flag_id)


class DuplicateReviewedV1(EventData):
    """A person decided a duplicate flag, or a change resolved it (`resolved`, decided by
    whoever made the change): the flag left the review backlog."""

    service = "registry"
    event_name = "DuplicateReviewed"

    flag_id: UUID
    household_id: UUID
    other_household_id: UUID
    location_code: str
    decision: DuplicateDecision
    flagged_at: datetime
    decided_at: datetime
    decided_by: str = Field(description="The deciding user's token subject")

    def subject(self) -> str:
        return str(self.flag_id)
