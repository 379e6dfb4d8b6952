"""Registry queries. Nothing here commits: the request or message that called owns the session."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.base import ExecutableOption

from amana_common.pagination import keyset
from registry.models import Household, Member


def _with_members() -> tuple[ExecutableOption, ...]:
    return (selectinload(Household.members).selectinload(Member.identifiers),)


async def next_household_sequence(session: AsyncSession) -> int:
    value = await session.scalar(text("SELECT nextval('household_number_seq')"))
    assert value is not None
    return int(value)


def add_household(session: AsyncSession, household: Household) -> None:
    session.add(household)


async def get_household(session: AsyncSession, household_id: UUID) -> Household | None:
    statement = select(Household).where(Household.id == household_id).options(*_with_members())
    return (await session.scalars(statement)).one_or_none()


async def list_households(
    session: AsyncSession,
    *,
    limit: int,
    after: UUID | None = None,
    location_code: str | None = None,
    status: str | None = None,
) -> list[Household]:
    """One page in id order (ids are uuid7, so this is enrolment order), `limit` + 1 rows so the
    caller can tell whether another page follows."""
    statement = keyset(select(Household).options(*_with_members()), Household.id, limit, after)
    if location_code is not None:
        statement = statement.where(Household.location_code == location_code)
    if status is not None:
        statement = statement.where(Household.status == status)
    return list((await session.scalars(statement)).all())
