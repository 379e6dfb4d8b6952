"""Events published by the payroll service on `payroll.events`.

An approved payroll is published as PayrollApproved chunks, all with the payroll id as subject
(one Kafka partition, in order): every chunk repeats the header (totals, line count, chunk
count) so a consumer can tell when it holds every line and check the totals. A chunk carries
at most 1,000 lines and stays under the outbox's event size limit.

Personal data on this topic: the recipients' names, identifier, phone and payment account in
PayrollApproved lines (the disbursement service needs them to pay).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from amana_contracts.base import EventData
from amana_contracts.demographics import AgeBand
from amana_contracts.provider import Mechanism
from amana_contracts.registry import AccountV1, IdentifierV1, Sex

MAX_LINES_PER_CHUNK = 1000

ProgrammeStatus = Literal["draft", "active", "suspended", "closed"]
FrequencyUnit = Literal["monthly", "every_n_months", "quarterly"]
ExclusionReason = Literal[
    "not_active",
    "under_review",
    "no_payable_preference",
    "provider_suspended",
    "provider_currency",
    "over_budget",
]


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FrequencyV1(_Value):
    unit: FrequencyUnit
    every_n_months: int = Field(default=1, ge=1, le=12, description="every_n_months only")
    payment_day: int = Field(ge=1, le=28, description="Day of the month payments open")
    payment_window_days: int = Field(ge=1, le=90, description="Days a payment may take")


class ProgrammeSnapshotV1(EventData):
    """A programme (benefit plan) as it is now; rules and formula are summarised by version."""

    service = "payroll"

    programme_id: UUID
    code: str
    name: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    status: ProgrammeStatus
    start_date: date
    end_date: date | None
    frequency: FrequencyV1
    budget_per_cycle_minor: int = Field(ge=0)
    rules_version: int = Field(ge=1, description="The current version of rules and formula")
    version: int = Field(ge=1)
    updated_at: datetime

    def subject(self) -> str:
        return str(self.programme_id)


class ProgrammeCreatedV1(ProgrammeSnapshotV1):
    """A programme was defined."""

    event_name = "ProgrammeCreated"


class ProgrammeUpdatedV1(ProgrammeSnapshotV1):
    """A programme, its status, rules or formula changed."""

    event_name = "ProgrammeUpdated"


class PayrollEventV1(EventData):
    """What every payroll event carries; the payroll id is the subject and the Kafka key."""

    service = "payroll"

    payroll_id: UUID
    programme_id: UUID
    programme_code: str
    cycle_id: UUID
    period_start: date
    period_end: date
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    def subject(self) -> str:
        return str(self.payroll_id)


class LocationCountV1(_Value):
    location_code: str
    eligible: int = Field(ge=0, description="Households meeting the rules")
    on_payroll: int = Field(ge=0)
    amount_minor: int = Field(ge=0)


class PayrollGeneratedV1(PayrollEventV1):
    """A payroll was generated and waits for approval: what it holds and what it left out."""

    event_name = "PayrollGenerated"

    rules_version: int = Field(ge=1)
    payment_window_start: date
    payment_window_end: date
    line_count: int = Field(ge=0)
    total_amount_minor: int = Field(ge=0)
    budget_minor: int = Field(ge=0)
    eligible_count: int = Field(ge=0)
    exclusions: dict[ExclusionReason, int] = Field(description="Households left out, by reason")
    by_location: list[LocationCountV1]
    generated_at: datetime


class RecipientLineV1(_Value):
    member_id: UUID
    given_name: str
    family_name: str
    sex: Sex
    age_band: AgeBand = Field(description="On the cycle's period start")
    identifier: IdentifierV1 | None = None
    phone: str | None = None


class PayrollLineV1(_Value):
    line_id: UUID
    household_id: UUID
    household_number: str
    location_code: str
    recipient: RecipientLineV1
    provider_id: UUID
    mechanism: Mechanism
    pay_point_id: UUID | None = None
    account: AccountV1 | None = None
    amount_minor: int = Field(gt=0)
    carried_over_payment_id: UUID | None = Field(
        default=None, description="Set when the line retries a failed payment of a past cycle"
    )


class PayrollApprovedV1(PayrollEventV1):
    """One chunk of an approved payroll: the header, repeated in every chunk, and its lines."""

    event_name = "PayrollApproved"

    payment_window_start: date
    payment_window_end: date
    approved_at: datetime
    approved_by: str = Field(description="The approver's token subject")
    line_count: int = Field(ge=0, description="Lines in the whole payroll")
    total_amount_minor: int = Field(ge=0, description="Amount of the whole payroll")
    chunk_index: int = Field(ge=0)
    chunk_count: int = Field(ge=1)
    lines: list[PayrollLineV1] = Field(max_length=MAX_LINES_PER_CHUNK)


class PayrollRejectedV1(PayrollEventV1):
    """An approver rejected a payroll; nothing of it is paid."""

    event_name = "PayrollRejected"

    reason: str
    rejected_at: datetime
    rejected_by: str
