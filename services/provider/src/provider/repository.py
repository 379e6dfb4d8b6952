"""Provider queries. Nothing here commits: the request that called owns the session."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from amana_common.locations import ancestors_or_self, descendant_prefixes
from amana_common.pagination import keyset
from provider.models import PayPoint, Provider, ProviderStatusChange

MAX_SERVING_PROVIDERS = 200


def add(session: AsyncSession, *rows: Provider | PayPoint | ProviderStatusChange) -> None:
    session.add_all(rows)


async def get_provider(
    session: AsyncSession, provider_id: UUID, *, lock: bool = False, with_pay_points: bool = False
) -> Provider | None:
    """`lock` makes the provider's changes serial, so its version counts each of them once."""
    statement = select(Provider).where(Provider.id == provider_id)
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    if with_pay_points:
        statement = statement.options(selectinload(Provider.pay_points))
    return (await session.scalars(statement)).one_or_none()


async def provider_code_taken(session: AsyncSession, code: str) -> bool:
    return bool(await session.scalar(select(exists().where(Provider.code == code))))


def _serves(location_code: str) -> ColumnElement[bool]:
    """Pay points with a location that covers `location_code` (is it or one of its ancestors)."""
    overlaps: ColumnElement[bool] = PayPoint.location_codes.overlap(
        ancestors_or_self(location_code)
    )
    return overlaps


def _within(area: str) -> ColumnElement[bool]:
    """Pay points with a location inside `area` (the area itself or any code below it)."""
    code = func.unnest(PayPoint.location_codes).column_valued("code")
    below = [func.starts_with(code, prefix) for prefix in descendant_prefixes(area)]
    return exists(select(code).where(or_(code == area, *below)))


async def list_providers(
    session: AsyncSession,
    *,
    limit: int,
    after: UUID | None = None,
    mechanism: str | None = None,
    location_code: str | None = None,
    status: str | None = None,
) -> list[Provider]:
    """One page in id (registration) order, `limit` + 1 rows. `location_code` keeps the
    providers with a service area covering it."""
    statement = keyset(select(Provider), Provider.id, limit, after)
    if mechanism is not None:
        statement = statement.where(Provider.mechanisms.contains([mechanism]))
    if location_code is not None:
        statement = statement.where(
            Provider.service_areas.overlap(ancestors_or_self(location_code))
        )
    if status is not None:
        statement = statement.where(Provider.status == status)
    return list((await session.scalars(statement)).all())


async def get_pay_point(
    session: AsyncSession, provider_id: UUID, pay_point_id: UUID
) -> PayPoint | None:
    statement = select(PayPoint).where(
        PayPoint.id == pay_point_id, PayPoint.provider_id == provider_id
    )
    return (await session.scalars(statement)).one_or_none()


async def list_pay_points(
    session: AsyncSession,
    *,
    limit: int,
    after: UUID | None = None,
    provider_id: UUID | None = None,
    serves: str | None = None,
    within: str | None = None,
    status: str | None = None,
) -> list[PayPoint]:
    """One page in id (creation) order, `limit` + 1 rows."""
    statement = keyset(select(PayPoint), PayPoint.id, limit, after)
    if provider_id is not None:
        statement = statement.where(PayPoint.provider_id == provider_id)
    if serves is not None:
        statement = statement.where(_serves(serves))
    if within is not None:
        statement = statement.where(_within(within))
    if status is not None:
        statement = statement.where(PayPoint.status == status)
    return list((await session.scalars(statement)).all())


async def serving_providers(
    session: AsyncSession, location_code: str, mechanism: str | None
) -> list[Provider]:
    """Active providers whose service areas cover `location_code`, offering `mechanism`."""
    statement = (
        select(Provider)
        .where(
            Provider.status == "active",
            Provider.service_areas.overlap(ancestors_or_self(location_code)),
        )
        .order_by(Provider.code)
        .limit(MAX_SERVING_PROVIDERS)
    )
    if mechanism is not None:
        statement = statement.where(Provider.mechanisms.contains([mechanism]))
    return list((await session.scalars(statement)).all())


async def serving_pay_points(
    session: AsyncSession, provider_ids: list[UUID], location_code: str
) -> list[PayPoint]:
    """The active pay points of these providers that serve `location_code`, in one query."""
    if not provider_ids:
        return []
    statement = (
        select(PayPoint)
        .where(
            PayPoint.provider_id.in_(provider_ids),
            PayPoint.status == "active",
            _serves(location_code),
        )
        .order_by(PayPoint.provider_id, PayPoint.code)
    )
    return list((await session.scalars(statement)).all())


async def status_history(
    session: AsyncSession, provider_id: UUID, limit: int
) -> list[ProviderStatusChange]:
    """The latest `limit` status changes, newest first."""
    statement = (
        select(ProviderStatusChange)
        .where(ProviderStatusChange.provider_id == provider_id)
        .order_by(ProviderStatusChange.id.desc())
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())
