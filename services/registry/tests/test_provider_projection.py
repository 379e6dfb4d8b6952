"""The registry's projection of provider events: only a newer version replaces what it holds,
status changes apply in order, a replay changes nothing, and the questions payment preferences
ask are one query each."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import select

from amana_common.consumers import EventConsumer
from amana_common.db import Database
from amana_common.events import build_event
from amana_contracts.base import EventData
from amana_contracts.provider import (
    ProviderReactivatedV1,
    ProviderRegisteredV1,
    ProviderSuspendedV1,
    ProviderUpdatedV1,
)
from registry import repository
from registry.consumers import HANDLERS, PROVIDER_PROJECTION
from registry.models import PayPointProjection, ProviderProjection
from registry.settings import RegistrySettings
from registry.worker import worker_components

PROVIDER = UUID("01930000-0000-7000-8000-0000000000a1")
KIBERA_POINT = UUID("01930000-0000-7000-8000-0000000000b1")
MOMBASA_POINT = UUID("01930000-0000-7000-8000-0000000000b2")
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def pay_point(pay_point_id: UUID, code: str, locations: list[str], status: str = "active") -> Any:
    return {
        "pay_point_id": pay_point_id,
        "code": code,
        "name": f"Pay point {code}",
        "location_codes": locations,
        "gps": None,
        "opening_days": ["mon", "wed"],
        "daily_capacity": 300,
        "status": status,
        "version": 1,
    }


def snapshot(
    model: type[ProviderRegisteredV1 | ProviderUpdatedV1], version: int, **changes: Any
) -> EventData:
    values: dict[str, Any] = {
        "provider_id": PROVIDER,
        "code": "EQUITY-KE",
        "legal_name": "Equity Bank Kenya",
        "country": "KE",
        "currencies": ["KES"],
        "status": "active",
        "status_reason": None,
        "mechanisms": ["bank_transfer", "cash_pay_point"],
        "service_areas": ["KE-047", "KE-001"],
        "fee": {"currency": "KES", "fixed_minor": 0, "basis_points": 25},
        "delivery": {"mode": "file", "base_url": None, "file_profile": None},
        "pay_points": [
            pay_point(KIBERA_POINT, "KIBERA-1", ["KE-047-0101"]),
            pay_point(MOMBASA_POINT, "MSA-1", ["KE-001"]),
        ],
        "version": version,
        "updated_at": T0 + timedelta(minutes=version),
    }
    return model.model_validate(values | changes)


def status_change(
    model: type[ProviderSuspendedV1 | ProviderReactivatedV1], version: int
) -> EventData:
    return model(
        provider_id=PROVIDER,
        code="EQUITY-KE",
        reason="Float exhausted" if model is ProviderSuspendedV1 else "Float topped up",
        changed_at=T0 + timedelta(minutes=version),
        version=version,
    )


async def apply(database: Database, *payloads: EventData) -> None:
    """As the consumer does: each event through its handler, in a transaction of its own."""
    for payload in payloads:
        async with database.sessionmaker() as session, session.begin():
            await HANDLERS[type(payload)](session, payload, build_event(payload))


async def projected(database: Database) -> tuple[Any, list[tuple[str, str, list[str]]]]:
    async with database.sessionmaker() as session:
        provider = (await session.execute(select(ProviderProjection))).scalars().one_or_none()
        points = await session.execute(
            select(
                PayPointProjection.code,
                PayPointProjection.status,
                PayPointProjection.location_codes,
            ).order_by(PayPointProjection.code)
        )
        return provider, [(code, status, list(locations)) for code, status, locations in points]


async def offers(database: Database, mechanism: str, currency: str, location: str) -> bool:
    async with database.sessionmaker() as session:
        return await repository.provider_offers(session, PROVIDER, mechanism, currency, location)


async def serves(database: Database, point: UUID, location: str, provider: UUID = PROVIDER) -> bool:
    async with database.sessionmaker() as session:
        return await repository.pay_point_serves(session, provider, point, location)


async def test_a_registered_provider_is_projected_with_its_pay_points(database: Database) -> None:
    await apply(database, snapshot(ProviderRegisteredV1, 1))

    provider, points = await projected(database)
    assert (provider.code, provider.status, provider.version) == ("EQUITY-KE", "active", 1)
    assert provider.mechanisms == ["bank_transfer", "cash_pay_point"]
    assert provider.currencies == ["KES"]
    assert provider.service_areas == ["KE-047", "KE-001"]
    assert points == [("KIBERA-1", "active", ["KE-047-0101"]), ("MSA-1", "active", ["KE-001"])]


async def test_the_questions_of_a_payment_preference_are_answered_from_the_projection(
    database: Database,
) -> None:
    await apply(database, snapshot(ProviderRegisteredV1, 1))

    assert await offers(database, "bank_transfer", "KES", "KE-047-0101")
    assert await offers(database, "cash_pay_point", "KES", "KE-001-0002")
    assert not await offers(database, "mobile_money", "KES", "KE-047-0101"), "not its mechanism"
    assert not await offers(database, "bank_transfer", "UGX", "KE-047-0101"), "not its currency"
    assert not await offers(database, "bank_transfer", "KES", "KE-0470"), "not its area"
    assert not await offers(database, "bank_transfer", "KES", "KE"), "areas never cover upwards"
    assert await serves(database, KIBERA_POINT, "KE-047-0101")
    assert await serves(database, MOMBASA_POINT, "KE-001-0003")
    assert not await serves(database, KIBERA_POINT, "KE-047-0102"), "not where it pays"
    assert not await serves(database, KIBERA_POINT, "KE-047-0101", provider=uuid4()), "not theirs"
    assert not await serves(database, uuid4(), "KE-047-0101"), "no such pay point"


async def test_only_a_newer_snapshot_replaces_the_projection(database: Database) -> None:
    newer = snapshot(
        ProviderUpdatedV1,
        3,
        currencies=["KES", "USD"],
        pay_points=[pay_point(KIBERA_POINT, "KIBERA-1", ["KE-047-0101"], status="inactive")],
    )
    await apply(database, snapshot(ProviderRegisteredV1, 1), newer)
    await apply(database, snapshot(ProviderUpdatedV1, 2), snapshot(ProviderUpdatedV1, 3))

    provider, points = await projected(database)
    assert provider.version == 3 and provider.currencies == ["KES", "USD"]
    assert points == [("KIBERA-1", "inactive", ["KE-047-0101"])], "MSA-1 removed, KIBERA-1 off"
    assert not await serves(database, KIBERA_POINT, "KE-047-0101"), "an inactive point pays no one"
    assert not await serves(database, MOMBASA_POINT, "KE-001"), "a removed point pays no one"


async def test_suspension_and_reactivation_apply_in_version_order(database: Database) -> None:
    await apply(database, snapshot(ProviderRegisteredV1, 1), status_change(ProviderSuspendedV1, 2))
    suspended, _ = await projected(database)
    offered_while_suspended = await offers(database, "bank_transfer", "KES", "KE-047")

    await apply(database, status_change(ProviderReactivatedV1, 3))
    await apply(database, status_change(ProviderSuspendedV1, 2))  # late and stale: ignored

    provider, _ = await projected(database)
    assert (suspended.status, suspended.version) == ("suspended", 2)
    assert not offered_while_suspended
    assert (provider.status, provider.version) == ("active", 3)
    assert await offers(database, "bank_transfer", "KES", "KE-047")


async def test_a_status_change_before_any_snapshot_writes_nothing(database: Database) -> None:
    await apply(database, status_change(ProviderSuspendedV1, 4))

    assert await projected(database) == (None, [])


async def test_a_replay_of_the_whole_history_changes_nothing(database: Database) -> None:
    history = [
        snapshot(ProviderRegisteredV1, 1),
        snapshot(ProviderUpdatedV1, 2, mechanisms=["bank_transfer"], pay_points=[]),
        status_change(ProviderSuspendedV1, 3),
        status_change(ProviderReactivatedV1, 4),
    ]
    await apply(database, *history)
    before = await projected(database)

    await apply(database, *history)

    provider, points = await projected(database)
    assert (provider.version, provider.status, provider.mechanisms, points) == (
        4,
        "active",
        ["bank_transfer"],
        [],
    )
    assert (before[0].version, before[1]) == (provider.version, points)


def test_the_registry_worker_consumes_provider_events_into_the_projection(
    settings: RegistrySettings, database: Database
) -> None:
    consumers = [c for c in worker_components(settings, database) if isinstance(c, EventConsumer)]

    assert [(c.name, c.topics) for c in consumers] == [(PROVIDER_PROJECTION, ["provider.events"])]
    assert set(HANDLERS) == {
        ProviderRegisteredV1,
        ProviderUpdatedV1,
        ProviderSuspendedV1,
        ProviderReactivatedV1,
    }
    assert consumers[0].policy.on_unknown_version == "block"
