"""Events and bodies the payroll tests build: households and providers as their services
publish them, applied through the projection handlers themselves."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.auth import Role, issue_token
from amana_common.db import Database
from amana_common.events import build_event
from amana_common.settings import ServiceSettings
from amana_contracts.base import EventData
from amana_contracts.provider import ProviderRegisteredV1
from amana_contracts.registry import HouseholdEnrolledV1
from payroll.consumers import HANDLERS

PSP = UUID("01930000-0000-7000-8000-0000000000a1")
CASH_POINT = UUID("01930000-0000-7000-8000-0000000000b1")

Person = tuple[date, str, bool]  # date of birth, sex, disability


def household(
    number: str,
    location: str,
    members: Sequence[Person],
    *,
    status: str = "active",
    attributes: dict[str, Any] | None = None,
    provider_id: UUID | None = PSP,
    mechanism: str = "mobile_money",
    pay_point_id: UUID | None = None,
    payable: bool = True,
    reasons: Sequence[str] = (),
    review: bool = False,
    version: int = 1,
    household_id: UUID | None = None,
    recipient: bool = True,
    family_name: str = "Otieno",
) -> HouseholdEnrolledV1:
    """A household snapshot; its first member is the head and the primary recipient."""
    member_ids = [uuid7() for _ in members]
    head_born, head_sex, _ = members[0]
    preference = None
    if provider_id is not None:
        account = (
            None
            if mechanism == "cash_pay_point"
            else {"kind": "msisdn", "value": f"+2547{number[-8:]}"}
        )
        preference = {
            "provider_id": provider_id,
            "mechanism": mechanism,
            "pay_point_id": pay_point_id,
            "account": account,
        }
    return HouseholdEnrolledV1.model_validate(
        {
            "household_id": household_id or uuid7(),
            "household_number": number,
            "location_code": location,
            "status": status,
            "enrolled_at": "2026-01-05T08:00:00+00:00",
            "size": len(members),
            "members": [
                {
                    "member_id": member_id,
                    "is_head": index == 0,
                    "is_primary_recipient": index == 0,
                    "relationship": "head" if index == 0 else "child",
                    "sex": sex,
                    "date_of_birth": born,
                    "disability": disability,
                }
                for index, (member_id, (born, sex, disability)) in enumerate(
                    zip(member_ids, members, strict=True)
                )
            ],
            "version": version,
            "eligibility_attributes": attributes or {},
            "primary_recipient": {
                "member_id": member_ids[0],
                "given_name": f"Given{number}",
                "family_name": family_name,
                "sex": head_sex,
                "date_of_birth": head_born,
                "identifier": {"scheme": "national_id", "value": f"ID{number}"},
                "phone": "+254700000001",
            }
            if recipient
            else None,
            "payment_preference": preference,
            "payable": payable,
            "not_payable_reasons": list(reasons),
            "duplicate_review_open": review,
        }
    )


def provider(
    provider_id: UUID = PSP,
    *,
    currencies: Sequence[str] = ("KES",),
    status: str = "active",
    version: int = 1,
    pay_point_status: str = "active",
) -> ProviderRegisteredV1:
    return ProviderRegisteredV1.model_validate(
        {
            "provider_id": provider_id,
            "code": f"PSP-{str(provider_id)[-4:]}",
            "legal_name": "Pesa Ltd",
            "country": "KE",
            "currencies": list(currencies),
            "status": status,
            "status_reason": None if status == "active" else "Float exhausted",
            "mechanisms": ["mobile_money", "cash_pay_point"],
            "service_areas": ["KE"],
            "fee": {"currency": currencies[0], "fixed_minor": 0, "basis_points": 0},
            "delivery": {
                "mode": "api",
                "base_url": "https://api.psp.example",
                "file_profile": None,
            },
            "pay_points": [
                {
                    "pay_point_id": CASH_POINT,
                    "code": "AG-1",
                    "name": "Market agent",
                    "location_codes": ["KE-047"],
                    "gps": None,
                    "opening_days": ["mon"],
                    "daily_capacity": 100,
                    "status": pay_point_status,
                    "version": 1,
                }
            ]
            if provider_id == PSP
            else [],
            "version": version,
            "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
    )


async def apply(session: AsyncSession, *payloads: EventData) -> None:
    """Applies events through the projection handlers, one by one, in this session."""
    for payload in payloads:
        await HANDLERS[type(payload)](session, payload, build_event(payload))


async def project(database: Database, *payloads: EventData) -> None:
    async with database.sessionmaker() as session, session.begin():
        await apply(session, *payloads)


def as_user(settings: ServiceSettings, subject: str, *roles: Role) -> dict[str, str]:
    """A token of a named user: maker-checker tells users apart by subject."""
    return {"Authorization": f"Bearer {issue_token(settings, subject, roles)}"}


FORMULA = {
    "base_amount_minor": 300_000,
    "top_ups": [
        {"where": {"age_band": ["0-4", "5-17"]}, "amount_minor": 50_000, "max_count": 3},
        {"where": {"disability": True}, "amount_minor": 100_000, "max_count": 2},
    ],
    "cap_minor": 600_000,
}
RULES = {
    "all": [
        {"field": "location", "op": "within", "value": "KE-047"},
        {"field": "members", "where": {"age_band": ["0-4", "5-17"]}, "op": ">=", "value": 1},
    ]
}


def programme_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": "CT-OVC",
        "name": "Cash transfer for orphans and vulnerable children",
        "currency": "KES",
        "start_date": "2026-01-01",
        "frequency": {"unit": "monthly", "payment_day": 10, "payment_window_days": 14},
        "budget_per_cycle_minor": 100_000_000,
        "eligibility": RULES,
        "formula": FORMULA,
        "budget_priority": [{"by": "attributes.pmt_score", "order": "asc"}],
    }
    body.update(overrides)
    return body
