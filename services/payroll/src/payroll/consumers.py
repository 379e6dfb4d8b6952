"""Projections kept from other services' events, keyed by contract class.

Each handler receives the session of the consumed message (or batch) and the typed, validated
payload. Every household and provider event carries the whole snapshot with its `version`: a
snapshot replaces the held row only when newer, so a replayed or reordered topic changes
nothing. The batch forms apply a whole poll of events in one statement per table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.consumers import BatchHandler, Handler
from amana_common.locations import ancestors_or_self
from amana_contracts.base import EventData
from amana_contracts.disbursement import PaymentFailedV1
from amana_contracts.envelope import CloudEvent
from amana_contracts.provider import (
    ProviderReactivatedV1,
    ProviderRegisteredV1,
    ProviderSnapshotV1,
    ProviderStatusChangeV1,
    ProviderSuspendedV1,
    ProviderUpdatedV1,
)
from amana_contracts.registry import (
    HouseholdEnrolledV1,
    HouseholdSnapshotV1,
    HouseholdStatusChangedV1,
    HouseholdUpdatedV1,
)
from payroll import repository
from payroll.domain import member_key

P = TypeVar("P", bound=EventData)


def _newest(payloads: Sequence[P], key: Callable[[P], Any]) -> list[P]:
    """The highest version of each aggregate in a batch (one statement may write a row once)."""
    newest: dict[Any, P] = {}
    for payload in payloads:
        held = newest.get(key(payload))
        if held is None or payload.version > held.version:  # type: ignore[attr-defined]
            newest[key(payload)] = payload
    return list(newest.values())


# --- households -----------------------------------------------------------------------


def household_row(snapshot: HouseholdSnapshotV1, now: datetime) -> dict[str, Any]:
    """What eligibility, amounts and payment need of a household snapshot."""
    recipient = snapshot.primary_recipient
    identifier = recipient.identifier if recipient else None
    preference = snapshot.payment_preference
    account = preference.account if preference else None
    return {
        "household_id": snapshot.household_id,
        "household_number": snapshot.household_number,
        "location_code": snapshot.location_code,
        "location_ancestors": ancestors_or_self(snapshot.location_code),
        "status": snapshot.status,
        "duplicate_review_open": snapshot.duplicate_review_open,
        "size": snapshot.size,
        "member_birth_dates": sorted(m.date_of_birth for m in snapshot.members),
        "member_keys": sorted(
            member_key(m.sex, m.disability, m.date_of_birth) for m in snapshot.members
        ),
        "eligibility_attributes": dict(snapshot.eligibility_attributes),
        "recipient_member_id": recipient.member_id if recipient else None,
        "recipient_given_name": recipient.given_name if recipient else None,
        "recipient_family_name": recipient.family_name if recipient else None,
        "recipient_sex": recipient.sex if recipient else None,
        "recipient_date_of_birth": recipient.date_of_birth if recipient else None,
        "recipient_identifier_scheme": identifier.scheme if identifier else None,
        "recipient_identifier_value": identifier.value if identifier else None,
        "recipient_phone": recipient.phone if recipient else None,
        "provider_id": preference.provider_id if preference else None,
        "mechanism": preference.mechanism if preference else None,
        "pay_point_id": preference.pay_point_id if preference else None,
        "account_kind": account.kind if account else None,
        "account_value": account.value if account else None,
        "account_bank_code": account.bank_code if account else None,
        "account_holder_name": account.holder_name if account else None,
        "payable": snapshot.payable,
        "not_payable_reasons": list(snapshot.not_payable_reasons),
        "version": snapshot.version,
        "updated_at": snapshot.updated_at,
        "projected_at": now,
    }


async def apply_households(
    session: AsyncSession, items: list[tuple[HouseholdSnapshotV1, CloudEvent]]
) -> None:
    """HouseholdEnrolled, HouseholdUpdated and HouseholdStatusChanged, a batch at a time."""
    now = datetime.now(UTC)
    newest = _newest([payload for payload, _ in items], lambda s: s.household_id)
    rows = [household_row(snapshot, now) for snapshot in newest]
    await repository.upsert_newer(session, repository.households, "household_id", rows)


async def apply_household(
    session: AsyncSession, snapshot: HouseholdSnapshotV1, event: CloudEvent
) -> None:
    await apply_households(session, [(snapshot, event)])


# --- providers ------------------------------------------------------------------------


def provider_row(snapshot: ProviderSnapshotV1, now: datetime) -> dict[str, Any]:
    return {
        "provider_id": snapshot.provider_id,
        "code": snapshot.code,
        "status": snapshot.status,
        "currencies": list(snapshot.currencies),
        "mechanisms": list(snapshot.mechanisms),
        "version": snapshot.version,
        "projected_at": now,
    }


async def apply_providers(
    session: AsyncSession, items: list[tuple[ProviderSnapshotV1, CloudEvent]]
) -> None:
    """ProviderRegistered and ProviderUpdated: the provider and, when its snapshot was newer,
    exactly its pay points."""
    now = datetime.now(UTC)
    newest = {s.provider_id: s for s in _newest([p for p, _ in items], lambda s: s.provider_id)}
    rows = [provider_row(snapshot, now) for snapshot in newest.values()]
    written = await repository.upsert_newer(session, repository.providers, "provider_id", rows)
    points = [
        {"pay_point_id": point.pay_point_id, "provider_id": provider_id, "status": point.status}
        for provider_id in written
        for point in newest[provider_id].pay_points
    ]
    await repository.replace_pay_points(session, written, points)


async def apply_provider(
    session: AsyncSession, snapshot: ProviderSnapshotV1, event: CloudEvent
) -> None:
    await apply_providers(session, [(snapshot, event)])


async def apply_provider_status(
    session: AsyncSession, change: ProviderStatusChangeV1, event: CloudEvent
) -> None:
    """ProviderSuspended and ProviderReactivated, for a provider already known (its snapshot
    comes first on its key's partition)."""
    status = "suspended" if isinstance(change, ProviderSuspendedV1) else "active"
    await repository.set_provider_status(session, change.provider_id, status, change.version)


# --- failed payments ------------------------------------------------------------------


async def apply_payment_failures(
    session: AsyncSession, items: list[tuple[PaymentFailedV1, CloudEvent]]
) -> None:
    """Retryable failures wait to be carried into their programme's next payroll, once: a
    failure of a line that was itself a carry-over is not carried again."""
    retryable = [payment for payment, _ in items if payment.retryable]
    if not retryable:
        return
    retried = await repository.carried_over_line_ids(
        session, [p.payroll_line_id for p in retryable]
    )
    now = datetime.now(UTC)
    rows = [
        {
            "payment_id": p.payment_id,
            "programme_id": p.programme_id,
            "cycle_id": p.cycle_id,
            "payroll_line_id": p.payroll_line_id,
            "household_id": p.household_id,
            "currency": p.currency,
            "amount_minor": p.amount_minor,
            "reason_code": p.reason_code,
            "failed_at": p.failed_at,
            "received_at": now,
        }
        for p in retryable
        if p.payroll_line_id not in retried
    ]
    await repository.insert_carry_overs(session, rows)


async def apply_payment_failure(
    session: AsyncSession, payment: PaymentFailedV1, event: CloudEvent
) -> None:
    await apply_payment_failures(session, [(payment, event)])


HANDLERS: Mapping[type[EventData], Handler[Any]] = {
    HouseholdEnrolledV1: apply_household,
    HouseholdUpdatedV1: apply_household,
    HouseholdStatusChangedV1: apply_household,
    ProviderRegisteredV1: apply_provider,
    ProviderUpdatedV1: apply_provider,
    ProviderSuspendedV1: apply_provider_status,
    ProviderReactivatedV1: apply_provider_status,
    PaymentFailedV1: apply_payment_failure,
}

BATCH_HANDLERS: Mapping[type[EventData], BatchHandler[Any]] = {
    HouseholdEnrolledV1: apply_households,
    HouseholdUpdatedV1: apply_households,
    HouseholdStatusChangedV1: apply_households,
    ProviderRegisteredV1: apply_providers,
    ProviderUpdatedV1: apply_providers,
    PaymentFailedV1: apply_payment_failures,
}
