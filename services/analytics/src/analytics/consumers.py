"""Handlers of every event analytics reads, keyed by contract class.

Each use case takes a whole batch of events (one statement per table for the batch); the
shared consumer hands it a polled run, or a single event when it applies records one by one.
Both run in the transaction that records the events in `processed_events`; what they write is also
idempotent by itself (versions, outcome ranks, chunk indexes), so a replay changes nothing
even after processed events have been pruned.

Personal data arrives on these topics (names, identifiers, phones, accounts, dates of birth,
household numbers) and is dropped by `domain` before anything is written.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.consumers import BatchHandler
from amana_contracts.base import EventData
from amana_contracts.catalog import all_events
from amana_contracts.disbursement import (
    PaymentFailedV1,
    PaymentReversedV1,
    PaymentSettledV1,
    PayrollReconciledV1,
)
from amana_contracts.envelope import CloudEvent
from amana_contracts.payroll import (
    PayrollApprovedV1,
    PayrollGeneratedV1,
    PayrollRejectedV1,
    ProgrammeCreatedV1,
    ProgrammeUpdatedV1,
)
from amana_contracts.provider import (
    ProviderReactivatedV1,
    ProviderRegisteredV1,
    ProviderSuspendedV1,
    ProviderUpdatedV1,
)
from amana_contracts.registry import (
    DuplicateFlaggedV1,
    DuplicateReviewedV1,
    HouseholdEnrolledV1,
    HouseholdStatusChangedV1,
    HouseholdUpdatedV1,
)
from analytics import service


def batch_handlers(secret: bytes) -> dict[type[EventData], BatchHandler[Any]]:
    """Every event type of every topic, each to the use case that takes a batch of it."""

    async def households(session: AsyncSession, batch: list[tuple[Any, CloudEvent]]) -> None:
        await service.apply_household_snapshots(session, batch, secret)

    async def payments(session: AsyncSession, batch: list[tuple[Any, CloudEvent]]) -> None:
        await service.apply_payment_outcomes(session, batch, secret)

    async def duplicates(session: AsyncSession, batch: list[tuple[Any, CloudEvent]]) -> None:
        await service.apply_duplicate_flags(session, batch, secret)

    handlers: dict[type[EventData], BatchHandler[Any]] = {
        HouseholdEnrolledV1: households,
        HouseholdUpdatedV1: households,
        HouseholdStatusChangedV1: households,
        DuplicateFlaggedV1: duplicates,
        DuplicateReviewedV1: duplicates,
        ProviderRegisteredV1: service.apply_provider_snapshots,
        ProviderUpdatedV1: service.apply_provider_snapshots,
        ProviderSuspendedV1: service.apply_provider_status,
        ProviderReactivatedV1: service.apply_provider_status,
        ProgrammeCreatedV1: service.apply_programmes,
        ProgrammeUpdatedV1: service.apply_programmes,
        PayrollGeneratedV1: service.apply_payrolls_generated,
        PayrollApprovedV1: service.apply_payrolls_approved,
        PayrollRejectedV1: service.apply_payrolls_rejected,
        PaymentSettledV1: payments,
        PaymentFailedV1: payments,
        PaymentReversedV1: payments,
        PayrollReconciledV1: service.apply_payrolls_reconciled,
    }
    missing = set(all_events()) - set(handlers)
    if missing:  # a new contract must be read, or said here to be left out
        raise RuntimeError(f"analytics has no handler for {sorted(m.__name__ for m in missing)}")
    return handlers
