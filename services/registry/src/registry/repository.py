"""Registry queries. Nothing here commits: the request or message that called owns the session."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import delete, exists, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.base import ExecutableOption

from amana_common.locations import ancestors_or_self
from amana_common.pagination import keyset
from amana_contracts.provider import ProviderSnapshotV1, ProviderStatus
from registry.models import Household, Member, PayPointProjection, ProviderProjection


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


async def apply_provider_snapshot(session: AsyncSession, snapshot: ProviderSnapshotV1) -> bool:
    """Replaces the provider and its pay points with `snapshot` when it is newer than what the
    projection holds; False (and nothing written) for an older or the same version."""
    values = {
        "provider_id": snapshot.provider_id,
        "code": snapshot.code,
        "status": snapshot.status,
        "mechanisms": list(snapshot.mechanisms),
        "currencies": list(snapshot.currencies),
        "service_areas": list(snapshot.service_areas),
        "version": snapshot.version,
        "updated_at": snapshot.updated_at,
    }
    statement = upsert(ProviderProjection).values(values)
    newer = statement.on_conflict_do_update(
        index_elements=[ProviderProjection.provider_id],
        set_={name: statement.excluded[name] for name in values if name != "provider_id"},
        where=ProviderProjection.version < statement.excluded.version,
    ).returning(ProviderProjection.provider_id)
    if await session.scalar(newer) is None:
        return False
    await session.execute(
        delete(PayPointProjection).where(PayPointProjection.provider_id == snapshot.provider_id)
    )
    if snapshot.pay_points:
        await session.execute(
            insert(PayPointProjection),
            [
                {
                    "pay_point_id": point.pay_point_id,
                    "provider_id": snapshot.provider_id,
                    "code": point.code,
                    "status": point.status,
                    "location_codes": list(point.location_codes),
                }
                for point in snapshot.pay_points
            ],
        )
    return True


async def apply_provider_status(
    session: AsyncSession,
    provider_id: UUID,
    status: ProviderStatus,
    version: int,
    changed_at: datetime,
) -> bool:
    """Sets the provider's status when `version` is newer than the projection's; False when
    it is not, or when no snapshot of the provider arrived yet (the next one carries it)."""
    statement = (
        update(ProviderProjection)
        .where(ProviderProjection.provider_id == provider_id, ProviderProjection.version < version)
        .values(status=status, version=version, updated_at=changed_at)
        .returning(ProviderProjection.provider_id)
    )
    return await session.scalar(statement) is not None


async def provider_offers(
    session: AsyncSession, provider_id: UUID, mechanism: str, currency: str, location_code: str
) -> bool:
    """Provider P is active, offers mechanism M in currency C and serves location L."""
    statement = select(
        exists().where(
            ProviderProjection.provider_id == provider_id,
            ProviderProjection.status == "active",
            ProviderProjection.mechanisms.contains([mechanism]),
            ProviderProjection.currencies.contains([currency]),
            ProviderProjection.service_areas.overlap(ancestors_or_self(location_code)),
        )
    )
    return bool(await session.scalar(statement))


async def pay_point_serves(
    session: AsyncSession, provider_id: UUID, pay_point_id: UUID, location_code: str
) -> bool:
    """Pay point X belongs to provider P, is active and serves location L."""
    statement = select(
        exists().where(
            PayPointProjection.pay_point_id == pay_point_id,
            PayPointProjection.provider_id == provider_id,
            PayPointProjection.status == "active",
            PayPointProjection.location_codes.overlap(ancestors_or_self(location_code)),
        )
    )
    return bool(await session.scalar(statement))
