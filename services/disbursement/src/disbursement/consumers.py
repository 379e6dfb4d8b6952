"""Handlers of the events disbursement consumes, keyed by contract class: each gets the
message's session, its validated payload and its envelope (the consumer records the event id
in the same transaction, so a redelivered event is applied once).

- `payroll.events` PayrollApproved: stage the chunk; release the payroll once it is whole.
- `provider.events`: keep the provider projection (delivery, fees, status) up to date.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from amana_contracts.base import EventData
from amana_contracts.envelope import CloudEvent
from amana_contracts.payroll import PayrollApprovedV1
from amana_contracts.provider import (
    ProviderReactivatedV1,
    ProviderRegisteredV1,
    ProviderSnapshotV1,
    ProviderSuspendedV1,
    ProviderUpdatedV1,
)
from disbursement import service

Handler = Callable[[AsyncSession, Any, CloudEvent], Awaitable[None]]


def handlers(batch_size: int) -> Mapping[type[EventData], Handler]:
    async def payroll_approved(
        session: AsyncSession, chunk: PayrollApprovedV1, event: CloudEvent
    ) -> None:
        await service.receive_payroll_chunk(session, chunk, batch_size, service.now_utc())

    async def provider_snapshot(
        session: AsyncSession, snapshot: ProviderSnapshotV1, event: CloudEvent
    ) -> None:
        await service.apply_provider_snapshot(session, snapshot)

    async def provider_suspended(
        session: AsyncSession, change: ProviderSuspendedV1, event: CloudEvent
    ) -> None:
        await service.apply_provider_status(session, change, "suspended")

    async def provider_reactivated(
        session: AsyncSession, change: ProviderReactivatedV1, event: CloudEvent
    ) -> None:
        await service.apply_provider_status(session, change, "active")

    return {
        PayrollApprovedV1: payroll_approved,
        ProviderRegisteredV1: provider_snapshot,
        ProviderUpdatedV1: provider_snapshot,
        ProviderSuspendedV1: provider_suspended,
        ProviderReactivatedV1: provider_reactivated,
    }
