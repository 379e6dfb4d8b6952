"""Registry use cases. They take the caller's session and never commit."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.check_digits import numbered
from amana_common.errors import Problem
from amana_common.events import add_to_outbox
from amana_contracts.registry import HouseholdEnrolledV1, MemberV1
from registry import repository
from registry.models import Household, Member, MemberIdentifier
from registry.schemas import HouseholdIn, MemberIn

HOUSEHOLD_NUMBER_PREFIX = "H"
HOUSEHOLD_NUMBER_DIGITS = 9


async def enrol_household(session: AsyncSession, request: HouseholdIn) -> Household:
    """Writes the household and its HouseholdEnrolled event in the caller's transaction."""
    now = datetime.now(UTC)
    sequence = await repository.next_household_sequence(session)
    household = Household(
        id=uuid7(),
        household_number=numbered(HOUSEHOLD_NUMBER_PREFIX, sequence, HOUSEHOLD_NUMBER_DIGITS),
        location_code=request.location_code,
        status="active",
        address=request.address,
        phone=request.phone,
        enrolled_at=now,
        updated_at=now,
        version=1,
        members=[_member(position, member) for position, member in enumerate(request.members)],
    )
    repository.add_household(session, household)
    await session.flush()
    await add_to_outbox(session, household_enrolled(household))
    return household


def _member(position: int, member: MemberIn) -> Member:
    member_id = uuid7()
    return Member(
        id=member_id,
        position=position,
        is_head=member.relationship == "head",
        relationship=member.relationship,
        given_name=member.given_name,
        family_name=member.family_name,
        sex=member.sex,
        date_of_birth=member.date_of_birth,
        disability=member.disability,
        identifiers=[
            MemberIdentifier(member_id=member_id, scheme=i.scheme, value=i.value)
            for i in member.identifiers
        ],
    )


def household_enrolled(household: Household) -> HouseholdEnrolledV1:
    """The event carries what payroll needs for targeting; names and identifiers stay here."""
    return HouseholdEnrolledV1(
        household_id=household.id,
        household_number=household.household_number,
        location_code=household.location_code,
        status=household.status,
        enrolled_at=household.enrolled_at.isoformat(),
        size=len(household.members),
        members=[
            MemberV1(
                member_id=m.id,
                is_head=m.is_head,
                relationship=m.relationship,
                sex=m.sex,
                date_of_birth=m.date_of_birth,
                disability=m.disability,
            )
            for m in household.members
        ],
    )


async def household_by_id(session: AsyncSession, household_id: UUID) -> Household:
    household = await repository.get_household(session, household_id)
    if household is None:
        raise Problem(404, "household-not-found", f"No household {household_id}")
    return household
