"""Contract-valid events as the other services publish them, full of personal data (names,
identifiers, phones, accounts, dates of birth, household and payment numbers) that analytics
must drop. Ids are derived from names (uuid5), so a scenario is the same on every run.
Used by the tests and by bench/."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from amana_common.events import build_event
from amana_contracts.base import EventData
from amana_contracts.disbursement import (
    PaymentFailedV1,
    PaymentReversedV1,
    PaymentSettledV1,
    PayrollReconciledV1,
    StatusTotalsV1,
)
from amana_contracts.envelope import CloudEvent
from amana_contracts.payroll import (
    FrequencyV1,
    LocationCountV1,
    PayrollApprovedV1,
    PayrollGeneratedV1,
    PayrollLineV1,
    PayrollRejectedV1,
    ProgrammeCreatedV1,
    RecipientLineV1,
)
from amana_contracts.provider import (
    DeliveryV1,
    FeeModelV1,
    ProviderRegisteredV1,
    ProviderSuspendedV1,
)
from amana_contracts.registry import (
    AccountV1,
    DuplicateFlaggedV1,
    DuplicateReviewedV1,
    HouseholdEnrolledV1,
    HouseholdStatusChangedV1,
    HouseholdUpdatedV1,
    IdentifierV1,
    MemberV1,
    PaymentPreferenceV1,
    RecipientV1,
)

Event = tuple[EventData, CloudEvent]
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def uid(name: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"amana-analytics-test:{name}")


def event(payload: EventData, at: datetime = T0) -> Event:
    """The payload in its envelope, as the consumer hands it over (time fixed for replays)."""
    return payload, build_event(payload).model_copy(update={"time": at})


# Personal data that every scenario carries, and that no analytics row may hold.
GIVEN, FAMILY = "Zawadi", "Kiprotich-Wanjiku"
NATIONAL_ID = "29384756"
PHONE = "+254711223344"
ACCOUNT = "254711223344"
IBAN = "DE89370400440532013000"
HOLDER = "Zawadi K Wanjiku"


@dataclass
class Person:
    sex: str
    born: date
    head: bool = False


def household(
    name: str,
    location: str,
    people: Sequence[Person],
    *,
    status: str = "active",
    version: int = 1,
    enrolled: datetime = T0,
    at: datetime | None = None,
    kind: type[EventData] = HouseholdEnrolledV1,
    provider: str = "MPESA",
    number: int = 1,
    extra: dict[str, Any] | None = None,
) -> Event:
    members = [
        MemberV1(
            member_id=uid(f"{name}/member/{index}"),
            is_head=person.head,
            is_primary_recipient=person.head,
            relationship="head" if person.head else "child",
            sex=person.sex,
            date_of_birth=person.born,
        )
        for index, person in enumerate(people)
    ]
    head = next((p for p in people if p.head), people[0])
    fields: dict[str, Any] = {
        "household_id": uid(f"household/{name}"),
        "household_number": f"H{number:010d}",
        "location_code": location,
        "status": status,
        "enrolled_at": enrolled.isoformat().replace("+00:00", "Z"),
        "size": len(members),
        "members": members,
        "version": version,
        "updated_at": at or enrolled,
        "primary_recipient": RecipientV1(
            member_id=members[0].member_id,
            given_name=GIVEN,
            family_name=FAMILY,
            sex=head.sex,
            date_of_birth=head.born,
            identifier=IdentifierV1(scheme="national_id", value=NATIONAL_ID),
            phone=PHONE,
        ),
        "payment_preference": PaymentPreferenceV1(
            provider_id=uid(f"provider/{provider}"),
            mechanism="mobile_money",
            account=AccountV1(kind="msisdn", value=ACCOUNT, holder_name=HOLDER),
        ),
        "payable": status == "active",
        **(extra or {}),
    }
    if kind is HouseholdStatusChangedV1:
        fields.setdefault("previous_status", "active")
    return event(kind.model_validate(fields), at or enrolled)


def provider(code: str, at: datetime = T0, version: int = 1) -> Event:
    return event(
        ProviderRegisteredV1(
            provider_id=uid(f"provider/{code}"),
            code=code,
            legal_name=f"{code} Payments Ltd",
            country="KE",
            currencies=["KES"],
            status="active",
            status_reason=None,
            mechanisms=["mobile_money", "bank_transfer"],
            service_areas=["KE"],
            fee=FeeModelV1(currency="KES", fixed_minor=0, basis_points=50),
            delivery=DeliveryV1(mode="api", base_url="https://api.psp.example", file_profile=None),
            pay_points=[],
            version=version,
            updated_at=at,
        ),
        at,
    )


def provider_suspended(code: str, version: int, at: datetime = T0) -> Event:
    return event(
        ProviderSuspendedV1(
            provider_id=uid(f"provider/{code}"),
            code=code,
            reason="audit",
            changed_at=at,
            version=version,
        ),
        at,
    )


def programme(code: str, budget: int = 10_000_000, window_days: int = 10) -> Event:
    return event(
        ProgrammeCreatedV1(
            programme_id=uid(f"programme/{code}"),
            code=code,
            name=f"{code} cash transfer",
            currency="KES",
            status="active",
            start_date=date(2026, 1, 1),
            end_date=None,
            frequency=FrequencyV1(unit="monthly", payment_day=5, payment_window_days=window_days),
            budget_per_cycle_minor=budget,
            rules_version=1,
            version=1,
            updated_at=T0,
        )
    )


@dataclass
class Cycle:
    """A payroll of a programme's cycle: its ids, period and window."""

    programme: str
    month: int
    year: int = 2026
    payroll: str = "a"
    window_days: int = 10

    @property
    def programme_id(self) -> UUID:
        return uid(f"programme/{self.programme}")

    @property
    def cycle_id(self) -> UUID:
        return uid(f"cycle/{self.programme}/{self.year}-{self.month}")

    @property
    def payroll_id(self) -> UUID:
        return uid(f"payroll/{self.programme}/{self.year}-{self.month}/{self.payroll}")

    @property
    def period_start(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def period_end(self) -> date:
        following = date(self.year + self.month // 12, self.month % 12 + 1, 1)
        return following - timedelta(days=1)

    @property
    def window_start(self) -> date:
        return date(self.year, self.month, 5)

    @property
    def window_end(self) -> date:
        return self.window_start + timedelta(days=self.window_days - 1)

    def header(self) -> dict[str, Any]:
        return {
            "payroll_id": self.payroll_id,
            "programme_id": self.programme_id,
            "programme_code": self.programme,
            "cycle_id": self.cycle_id,
            "period_start": self.period_start,
            "period_end": self.period_end,
            "currency": "KES",
        }


@dataclass
class Line:
    name: str
    location: str
    provider: str = "MPESA"
    mechanism: str = "mobile_money"
    sex: str = "female"
    band: str = "35-59"
    amount: int = 300_000

    def line_id(self, cycle: Cycle) -> UUID:
        return uid(f"line/{cycle.payroll_id}/{self.name}")

    def payment_id(self, cycle: Cycle) -> UUID:
        return uid(f"payment/{cycle.payroll_id}/{self.name}")


def payroll_generated(
    cycle: Cycle,
    lines: Sequence[Line],
    *,
    eligible_by_location: dict[str, int],
    exclusions: dict[str, int],
    budget: int,
    at: datetime = T0,
) -> Event:
    on_payroll: dict[str, list[int]] = {}
    for line in lines:
        on_payroll.setdefault(line.location, []).append(line.amount)
    by_location: dict[str, LocationCountV1] = {}
    for location, eligible in sorted(eligible_by_location.items()):
        amounts = on_payroll.get(location, [])
        by_location[location] = LocationCountV1(
            location_code=location,
            eligible=eligible,
            on_payroll=len(amounts),
            amount_minor=sum(amounts),
        )
    return event(
        PayrollGeneratedV1(
            **cycle.header(),
            rules_version=1,
            payment_window_start=cycle.window_start,
            payment_window_end=cycle.window_end,
            line_count=len(lines),
            total_amount_minor=sum(line.amount for line in lines),
            budget_minor=budget,
            eligible_count=sum(eligible_by_location.values()),
            exclusions=exclusions,
            by_location=list(by_location.values()),
            generated_at=at,
        ),
        at,
    )


def payroll_approved(
    cycle: Cycle, lines: Sequence[Line], *, at: datetime, chunk_size: int = 1000
) -> list[Event]:
    chunks = [lines[i : i + chunk_size] for i in range(0, len(lines), chunk_size)] or [[]]
    events = []
    for index, chunk in enumerate(chunks):
        payload_lines = [
            PayrollLineV1(
                line_id=line.line_id(cycle),
                household_id=uid(f"household/{line.name}"),
                household_number=f"H{zlib.crc32(line.name.encode()) % 10**10:010d}",
                location_code=line.location,
                recipient=RecipientLineV1(
                    member_id=uid(f"{line.name}/member/0"),
                    given_name=GIVEN,
                    family_name=FAMILY,
                    sex=line.sex,
                    age_band=line.band,
                    identifier=IdentifierV1(scheme="national_id", value=NATIONAL_ID),
                    phone=PHONE,
                ),
                provider_id=uid(f"provider/{line.provider}"),
                mechanism=line.mechanism,
                account=AccountV1(kind="iban", value=IBAN, holder_name=HOLDER),
                amount_minor=line.amount,
            )
            for line in chunk
        ]
        events.append(
            event(
                PayrollApprovedV1(
                    **cycle.header(),
                    payment_window_start=cycle.window_start,
                    payment_window_end=cycle.window_end,
                    approved_at=at,
                    approved_by="approver-sub-7",
                    line_count=len(lines),
                    total_amount_minor=sum(line.amount for line in lines),
                    chunk_index=index,
                    chunk_count=len(chunks),
                    lines=payload_lines,
                ),
                at,
            )
        )
    return events


def payroll_rejected(cycle: Cycle, at: datetime = T0) -> Event:
    return event(
        PayrollRejectedV1(
            **cycle.header(), reason="wrong amounts", rejected_at=at, rejected_by="approver-sub-7"
        ),
        at,
    )


def _payment_fields(cycle: Cycle, line: Line) -> dict[str, Any]:
    return {
        "payment_id": line.payment_id(cycle),
        "payment_number": f"P{zlib.crc32(f'{cycle.payroll_id}{line.name}'.encode()):012d}",
        "payroll_id": cycle.payroll_id,
        "payroll_line_id": line.line_id(cycle),
        "programme_id": cycle.programme_id,
        "cycle_id": cycle.cycle_id,
        "household_id": uid(f"household/{line.name}"),
        "provider_id": uid(f"provider/{line.provider}"),
        "mechanism": line.mechanism,
        "location_code": line.location,
        "recipient_sex": line.sex,
        "recipient_age_band": line.band,
        "currency": "KES",
        "amount_minor": line.amount,
    }


def settled(cycle: Cycle, line: Line, at: datetime, fee: int = 0) -> Event:
    return event(
        PaymentSettledV1(
            **_payment_fields(cycle, line),
            provider_reference=f"REF-{line.name}-{NATIONAL_ID}",
            settled_at=at,
            fee_minor=fee,
        ),
        at,
    )


def failed(
    cycle: Cycle, line: Line, at: datetime, reason: str = "AC01", outcome: str = "failed"
) -> Event:
    return event(
        PaymentFailedV1(
            **_payment_fields(cycle, line),
            outcome=outcome,
            reason_code=reason,
            retryable=outcome == "failed",
            failed_at=at,
        ),
        at,
    )


def reversed_(cycle: Cycle, line: Line, at: datetime, reason: str = "MD07") -> Event:
    return event(
        PaymentReversedV1(**_payment_fields(cycle, line), reason_code=reason, reversed_at=at), at
    )


def reconciled(cycle: Cycle, lines: Sequence[Line], at: datetime) -> Event:
    return event(
        PayrollReconciledV1(
            payroll_id=cycle.payroll_id,
            programme_id=cycle.programme_id,
            cycle_id=cycle.cycle_id,
            currency="KES",
            line_count=len(lines),
            total_amount_minor=sum(line.amount for line in lines),
            by_status={"settled": StatusTotalsV1(count=len(lines), amount_minor=0)},
            exceptions_open=0,
            fees_minor=0,
            reconciled_at=at,
        ),
        at,
    )


def duplicate_flagged(name: str, location: str, at: datetime) -> Event:
    return event(
        DuplicateFlaggedV1(
            flag_id=uid(f"flag/{name}"),
            household_id=uid(f"household/{name}"),
            other_household_id=uid(f"household/{name}-twin"),
            location_code=location,
            score=0.93,
            reasons=["same national id"],
            flagged_at=at,
        ),
        at,
    )


def duplicate_reviewed(name: str, location: str, flagged: datetime, decided: datetime) -> Event:
    return event(
        DuplicateReviewedV1(
            flag_id=uid(f"flag/{name}"),
            household_id=uid(f"household/{name}"),
            other_household_id=uid(f"household/{name}-twin"),
            location_code=location,
            decision="not_duplicate",
            flagged_at=flagged,
            decided_at=decided,
            decided_by="reviewer-sub-42",
        ),
        decided,
    )


@dataclass
class Scenario:
    """Events in the order a consumer would apply them."""

    events: list[Event] = field(default_factory=list)

    def add(self, *items: Event | Iterable[Event]) -> Scenario:
        for item in items:
            if isinstance(item, tuple):
                self.events.append(item)
            else:
                self.events.extend(item)
        return self


__all__ = ["HouseholdStatusChangedV1", "HouseholdUpdatedV1"]
