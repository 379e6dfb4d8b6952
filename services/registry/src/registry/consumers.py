"""What the registry consumes: provider events, kept as the projection against which payment
preferences are checked (provider, mechanism, currency, pay point, location). A provider event
that changes the projection also gives the households paying through that provider their next
snapshot, so payroll learns whether they are payable (and why not) in the same transaction."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.consumers import Handler, event_consumer
from amana_common.db import Database
from amana_common.settings import ServiceSettings
from amana_common.worker import Component
from amana_contracts.base import EventData
from amana_contracts.envelope import CloudEvent
from amana_contracts.provider import (
    ProviderReactivatedV1,
    ProviderRegisteredV1,
    ProviderSnapshotV1,
    ProviderStatus,
    ProviderStatusChangeV1,
    ProviderSuspendedV1,
    ProviderUpdatedV1,
)
from registry import repository, service

PROVIDER_PROJECTION = "registry-provider-projection"

log = logging.getLogger("registry.consumers")


async def on_provider_snapshot(
    session: AsyncSession, snapshot: ProviderSnapshotV1, event: CloudEvent
) -> None:
    if await repository.apply_provider_snapshot(session, snapshot):
        await service.republish_for_provider(session, snapshot.provider_id)


async def on_provider_suspended(
    session: AsyncSession, change: ProviderSuspendedV1, event: CloudEvent
) -> None:
    await _apply_status(session, change, "suspended")


async def on_provider_reactivated(
    session: AsyncSession, change: ProviderReactivatedV1, event: CloudEvent
) -> None:
    await _apply_status(session, change, "active")


async def _apply_status(
    session: AsyncSession, change: ProviderStatusChangeV1, status: ProviderStatus
) -> None:
    applied = await repository.apply_provider_status(
        session, change.provider_id, status, change.version, change.changed_at
    )
    if applied:
        await service.republish_for_provider(session, change.provider_id)
    else:
        log.info(
            "provider %s status v%s not applied: older than the projection, or no snapshot yet",
            change.provider_id,
            change.version,
        )


HANDLERS: dict[type[EventData], Handler[Any]] = {
    ProviderRegisteredV1: on_provider_snapshot,
    ProviderUpdatedV1: on_provider_snapshot,
    ProviderSuspendedV1: on_provider_suspended,
    ProviderReactivatedV1: on_provider_reactivated,
}


def provider_projection(settings: ServiceSettings, database: Database) -> Component:
    return event_consumer(settings, database, PROVIDER_PROJECTION, HANDLERS)
