"""Provider use cases. They take the caller's session and never commit.

Every change of a provider or of one of its pay points locks the provider row, increments the
provider's version and writes, in the same transaction, the event that says so: the whole
snapshot (ProviderRegistered, ProviderUpdated) or the status change (ProviderSuspended,
ProviderReactivated). Bad input is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.errors import Problem, field_problem
from amana_common.etag import IfMatch
from amana_common.events import EventTooLarge, add_to_outbox
from amana_common.locations import covered_by_any
from amana_common.outbound import OutboundUrlPolicy, UnsafeUrl
from amana_contracts.provider import (
    ProviderReactivatedV1,
    ProviderRegisteredV1,
    ProviderSnapshotV1,
    ProviderStatus,
    ProviderStatusChangeV1,
    ProviderSuspendedV1,
    ProviderUpdatedV1,
)
from provider import repository
from provider.models import PayPoint, Provider, ProviderStatusChange
from provider.schemas import (
    DeliveryIn,
    PayPointIn,
    PayPointPatch,
    ProviderIn,
    ProviderPatch,
)

CASH = "cash_pay_point"
REGISTERED_REASON = "registered"
# The unique constraints on provider codes and on pay point codes within a provider.
_UNIQUE_CODES = ("uq_providers_code", "uq_pay_points_provider_id")


@dataclass(frozen=True)
class Rules:
    """What the use cases enforce from configuration."""

    api_urls: OutboundUrlPolicy
    max_pay_points: int


def _not_found(kind: str, identifier: UUID) -> Problem:
    return Problem(404, f"{kind}-not-found", f"No {kind.replace('-', ' ')} {identifier}")


def _duplicate_code(code: str, scope: str) -> Problem:
    return field_problem("code", f"code {code!r} is already used {scope}", "duplicate-code", 409)


async def _flush(session: AsyncSession) -> None:
    """Flushes; a unique code taken by a concurrent request is the same 409 as the pre-check."""
    try:
        await session.flush()
    except IntegrityError as error:
        if not any(name in str(error.orig) for name in _UNIQUE_CODES):
            raise
        raise field_problem("code", "code is already used", "duplicate-code", 409) from error


# --- providers ---------------------------------------------------------------------------


async def register_provider(
    session: AsyncSession, request: ProviderIn, rules: Rules, actor: str | None
) -> Provider:
    """Writes the provider, its first status history row and ProviderRegistered."""
    changes = _provider_changes(request, ProviderIn.model_fields, rules)
    _check_fee_currency(request.fee.currency, request.currencies)
    if await repository.provider_code_taken(session, request.code):
        raise _duplicate_code(request.code, "by another provider")
    now = datetime.now(UTC)
    provider = Provider(
        id=uuid7(),
        code=request.code,
        status="active",
        status_reason=None,
        status_changed_at=now,
        registered_at=now,
        updated_at=now,
        version=1,
        pay_points=[],
        **changes,
    )
    history = ProviderStatusChange(
        provider=provider, status="active", reason=REGISTERED_REASON, actor=actor, changed_at=now
    )
    repository.add(session, provider, history)
    await _flush(session)
    await _add_snapshot_to_outbox(session, ProviderRegisteredV1.model_validate(_snapshot(provider)))
    return provider


async def provider_by_id(
    session: AsyncSession, provider_id: UUID, *, lock: bool = False, with_pay_points: bool = False
) -> Provider:
    provider = await repository.get_provider(
        session, provider_id, lock=lock, with_pay_points=with_pay_points
    )
    if provider is None:
        raise _not_found("provider", provider_id)
    return provider


async def _provider_for_change(session: AsyncSession, provider_id: UUID) -> Provider:
    return await provider_by_id(session, provider_id, lock=True, with_pay_points=True)


async def update_provider(
    session: AsyncSession, provider_id: UUID, patch: ProviderPatch, if_match: IfMatch, rules: Rules
) -> Provider:
    """Applies the fields given; a change publishes ProviderUpdated, no change does nothing."""
    provider = await _provider_for_change(session, provider_id)
    if_match.require(provider.version)
    changes = _provider_changes(patch, patch.model_fields_set, rules)
    currencies = changes.get("currencies", provider.currencies)
    _check_fee_currency(changes.get("fee_currency", provider.fee_currency), currencies)
    _check_pay_points_fit(
        provider.pay_points,
        changes.get("mechanisms", provider.mechanisms),
        changes.get("service_areas", provider.service_areas),
    )
    for name, value in changes.items():
        setattr(provider, name, value)
    if session.is_modified(provider):
        await _provider_changed(session, provider)
    return provider


def _provider_changes(body: BaseModel, fields: Iterable[str], rules: Rules) -> dict[str, Any]:
    """The provider columns the given fields of a ProviderIn or ProviderPatch set."""
    changes: dict[str, Any] = {}
    for name in fields:
        value = getattr(body, name)
        if name == "fee":
            changes |= {
                "fee_currency": value.currency,
                "fee_fixed_minor": value.fixed_minor,
                "fee_basis_points": value.basis_points,
            }
        elif name == "delivery":
            changes |= _delivery_columns(value, rules.api_urls)
        elif name == "contact":
            changes["contact"] = None if value is None else value.model_dump(exclude_none=True)
        elif name != "code":
            changes[name] = value
    return changes


def _delivery_columns(delivery: DeliveryIn, policy: OutboundUrlPolicy) -> dict[str, Any]:
    base_url = None
    if delivery.base_url is not None:
        try:
            base_url = policy.check(delivery.base_url)
        except UnsafeUrl as refused:
            raise field_problem(
                "delivery.base_url", f"the base URL {refused}", "unsafe-url"
            ) from refused
    profile = delivery.file_profile
    return {
        "delivery_mode": delivery.mode,
        "delivery_base_url": base_url,
        "delivery_file_profile": None if profile is None else profile.model_dump(),
    }


def _check_fee_currency(currency: str, currencies: list[str]) -> None:
    if currency not in currencies:
        raise field_problem(
            "fee.currency", f"fee currency {currency} is not one of the provider's currencies"
        )


def _check_pay_points_fit(
    pay_points: list[PayPoint], mechanisms: list[str], service_areas: list[str]
) -> None:
    """A provider keeps its pay points consistent: cash offered, and all inside its areas."""
    if pay_points and CASH not in mechanisms:
        raise field_problem(
            "mechanisms", f"{CASH} cannot be dropped while the provider has pay points"
        )
    outside = [p.code for p in pay_points if not _all_covered(p.location_codes, service_areas)]
    if outside:
        raise field_problem(
            "service_areas",
            f"pay points {', '.join(outside[:5])} would be outside the provider's service areas",
        )


def _all_covered(location_codes: list[str], areas: list[str]) -> bool:
    return all(covered_by_any(code, areas) for code in location_codes)


async def _provider_changed(session: AsyncSession, provider: Provider) -> None:
    provider.version += 1
    provider.updated_at = datetime.now(UTC)
    await _flush(session)
    await _add_snapshot_to_outbox(session, ProviderUpdatedV1.model_validate(_snapshot(provider)))


async def _add_snapshot_to_outbox(session: AsyncSession, snapshot: ProviderSnapshotV1) -> None:
    try:
        await add_to_outbox(session, snapshot)
    except EventTooLarge as error:
        raise Problem(
            409,
            "provider-too-large",
            f"Provider {snapshot.code} would need a {error.size}-byte event, over the "
            f"{error.limit} an event may take: remove pay points or their locations",
        ) from error


def _snapshot(provider: Provider) -> dict[str, Any]:
    """The provider as ProviderRegistered and ProviderUpdated carry it: no contact, no secret."""
    return {
        "provider_id": provider.id,
        "code": provider.code,
        "legal_name": provider.legal_name,
        "country": provider.country,
        "currencies": provider.currencies,
        "status": provider.status,
        "status_reason": provider.status_reason,
        "mechanisms": provider.mechanisms,
        "service_areas": provider.service_areas,
        "fee": provider.fee,
        "delivery": provider.delivery,
        "pay_points": [
            {
                "pay_point_id": p.id,
                "code": p.code,
                "name": p.name,
                "location_codes": p.location_codes,
                "gps": p.gps,
                "opening_days": p.opening_days,
                "daily_capacity": p.daily_capacity,
                "status": p.status,
                "version": p.version,
            }
            for p in sorted(provider.pay_points, key=lambda p: p.code)
        ],
        "version": provider.version,
        "updated_at": provider.updated_at,
    }


_STATUS_EVENTS: dict[ProviderStatus, type[ProviderStatusChangeV1]] = {
    "suspended": ProviderSuspendedV1,
    "active": ProviderReactivatedV1,
}


async def change_status(
    session: AsyncSession,
    provider_id: UUID,
    status: ProviderStatus,
    reason: str,
    actor: str | None,
) -> Provider:
    """Suspends (status `suspended`) or reactivates (`active`); the same status again is 409."""
    provider = await provider_by_id(session, provider_id, lock=True)
    if provider.status == status:
        raise Problem(409, f"provider-already-{status}", f"Provider {provider.code} is {status}")
    now = datetime.now(UTC)
    provider.status = status
    provider.status_reason = reason
    provider.status_changed_at = now
    provider.updated_at = now
    provider.version += 1
    repository.add(
        session,
        ProviderStatusChange(
            provider=provider, status=status, reason=reason, actor=actor, changed_at=now
        ),
    )
    await _flush(session)
    event = _STATUS_EVENTS[status](
        provider_id=provider.id,
        code=provider.code,
        reason=reason,
        changed_at=now,
        version=provider.version,
    )
    await add_to_outbox(session, event)
    return provider


async def status_history(
    session: AsyncSession, provider_id: UUID, limit: int
) -> list[ProviderStatusChange]:
    await provider_by_id(session, provider_id)
    return await repository.status_history(session, provider_id, limit)


# --- pay points --------------------------------------------------------------------------


async def add_pay_point(
    session: AsyncSession, provider_id: UUID, request: PayPointIn, rules: Rules
) -> PayPoint:
    """Adds a pay point to a provider offering cash, inside its service areas."""
    provider = await _provider_for_change(session, provider_id)
    if CASH not in provider.mechanisms:
        raise Problem(
            422,
            "cash-mechanism-required",
            f"Provider {provider.code} does not offer {CASH}: add the mechanism first",
            errors=[{"field": "provider_id", "in": "path", "message": f"does not offer {CASH}"}],
        )
    _check_locations(request.location_codes, provider.service_areas)
    if any(p.code == request.code for p in provider.pay_points):
        raise _duplicate_code(request.code, f"by a pay point of {provider.code}")
    if len(provider.pay_points) >= rules.max_pay_points:
        raise Problem(
            409,
            "too-many-pay-points",
            f"Provider {provider.code} has the maximum of {rules.max_pay_points} pay points",
        )
    now = datetime.now(UTC)
    pay_point = PayPoint(
        id=uuid7(),
        provider_id=provider.id,
        code=request.code,
        created_at=now,
        updated_at=now,
        version=1,
        **_pay_point_columns(request, PayPointIn.model_fields),
    )
    provider.pay_points.append(pay_point)
    await _provider_changed(session, provider)
    return pay_point


def _check_locations(location_codes: list[str], service_areas: list[str]) -> None:
    for index, code in enumerate(location_codes):
        if not covered_by_any(code, service_areas):
            raise field_problem(
                f"location_codes.{index}",
                f"{code} is outside the provider's service areas ({', '.join(service_areas)})",
                "outside-service-area",
            )


def _pay_point_columns(body: PayPointIn | PayPointPatch, fields: Iterable[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in fields:
        value = getattr(body, name)
        if name == "gps":
            changes["latitude"] = None if value is None else value.latitude
            changes["longitude"] = None if value is None else value.longitude
        elif name != "code":
            changes[name] = value
    return changes


async def pay_point_by_id(session: AsyncSession, provider_id: UUID, pay_point_id: UUID) -> PayPoint:
    pay_point = await repository.get_pay_point(session, provider_id, pay_point_id)
    if pay_point is None:
        raise _not_found("pay-point", pay_point_id)
    return pay_point


async def _pay_point_for_change(
    session: AsyncSession, provider_id: UUID, pay_point_id: UUID, if_match: IfMatch
) -> tuple[Provider, PayPoint]:
    provider = await _provider_for_change(session, provider_id)
    pay_point = next((p for p in provider.pay_points if p.id == pay_point_id), None)
    if pay_point is None:
        raise _not_found("pay-point", pay_point_id)
    if_match.require(pay_point.version)
    return provider, pay_point


async def update_pay_point(
    session: AsyncSession,
    provider_id: UUID,
    pay_point_id: UUID,
    patch: PayPointPatch,
    if_match: IfMatch,
) -> PayPoint:
    provider, pay_point = await _pay_point_for_change(session, provider_id, pay_point_id, if_match)
    if patch.location_codes is not None:
        _check_locations(patch.location_codes, provider.service_areas)
    for name, value in _pay_point_columns(patch, patch.model_fields_set).items():
        setattr(pay_point, name, value)
    if session.is_modified(pay_point):
        pay_point.version += 1
        pay_point.updated_at = datetime.now(UTC)
        await _provider_changed(session, provider)
    return pay_point


async def remove_pay_point(
    session: AsyncSession, provider_id: UUID, pay_point_id: UUID, if_match: IfMatch
) -> None:
    provider, pay_point = await _pay_point_for_change(session, provider_id, pay_point_id, if_match)
    provider.pay_points.remove(pay_point)
    await _provider_changed(session, provider)


# --- lookup ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingOffer:
    provider: Provider
    mechanisms: list[str]
    pay_points: list[PayPoint]


async def serving(
    session: AsyncSession, location_code: str, mechanism: str | None
) -> list[ServingOffer]:
    """Active providers that can pay someone at `location_code` (with `mechanism`, when
    given): their service areas cover it, and for cash one of their active pay points serves
    it. Two queries, whatever the number of providers."""
    providers = await repository.serving_providers(session, location_code, mechanism)
    cash_providers = [p.id for p in providers if CASH in p.mechanisms]
    pay_points: dict[UUID, list[PayPoint]] = {}
    for pay_point in await repository.serving_pay_points(session, cash_providers, location_code):
        pay_points.setdefault(pay_point.provider_id, []).append(pay_point)
    found = []
    for provider in providers:
        points = pay_points.get(provider.id, [])
        usable = [
            m
            for m in provider.mechanisms
            if (mechanism is None or m == mechanism) and (m != CASH or points)
        ]
        if usable:
            found.append(ServingOffer(provider, usable, points if CASH in usable else []))
    return found
