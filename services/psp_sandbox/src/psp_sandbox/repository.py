"""Sandbox queries. Bulk work is set-based: a batch's payments are one INSERT, a webhook's
payments one UPDATE; workers claim rows with FOR UPDATE SKIP LOCKED so several may run."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, and_, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, undefer

from amana_common.pagination import keyset
from psp_sandbox.models import (
    Batch,
    Delivery,
    DeliveryAttempt,
    Fault,
    FaultInjection,
    Payment,
    SandboxProvider,
)

PENDING = "pending"

# --- providers -----------------------------------------------------------------------------


async def get_provider(session: AsyncSession, provider_id: UUID) -> SandboxProvider | None:
    return await session.get(SandboxProvider, provider_id)


async def provider_by_key_hash(session: AsyncSession, key_hash: str) -> SandboxProvider | None:
    return await session.scalar(
        select(SandboxProvider).where(SandboxProvider.api_key_hash == key_hash)
    )


async def key_hash_owner(session: AsyncSession, key_hash: str) -> UUID | None:
    return await session.scalar(
        select(SandboxProvider.id).where(SandboxProvider.api_key_hash == key_hash)
    )


async def list_providers(
    session: AsyncSession, limit: int, after: UUID | None
) -> Sequence[SandboxProvider]:
    statement = keyset(select(SandboxProvider), SandboxProvider.id, limit, after)
    return (await session.scalars(statement)).all()


async def providers_by_id(
    session: AsyncSession, ids: Collection[UUID]
) -> dict[UUID, SandboxProvider]:
    rows = await session.scalars(select(SandboxProvider).where(SandboxProvider.id.in_(ids)))
    return {provider.id: provider for provider in rows}


# --- batches and payments ------------------------------------------------------------------


async def insert_batch(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    """Inserts the batch unless its id exists (a concurrent insert of the same id waits for the
    first to commit); answers whether this call inserted it."""
    inserted = await session.scalar(
        insert(Batch).values(**values).on_conflict_do_nothing().returning(Batch.id)
    )
    return inserted is not None


async def get_batch(session: AsyncSession, batch_id: UUID) -> Batch | None:
    return await session.get(Batch, batch_id)


async def numbers_taken(
    session: AsyncSession, provider_id: UUID, numbers: Sequence[str]
) -> list[str]:
    taken = await session.scalars(
        select(Payment.payment_number).where(
            Payment.provider_id == provider_id, Payment.payment_number.in_(numbers)
        )
    )
    return list(taken)


async def insert_payments(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    await session.execute(insert(Payment), list(rows))


async def batch_payments(session: AsyncSession, batch_id: UUID) -> Sequence[Any]:
    """The batch's payments in batch order, each with the status of its genuine webhook."""
    statement = (
        select(Payment, Delivery.status.label("delivery_status"))
        .outerjoin(Delivery, Delivery.id == Payment.delivery_id)
        .where(Payment.batch_id == batch_id)
        .order_by(Payment.id)
    )
    return (await session.execute(statement)).all()


async def claim_due_payments(session: AsyncSession, now: datetime, limit: int) -> list[Payment]:
    """Payments whose result fell due and is in no webhook yet, oldest first, locked."""
    statement = (
        select(Payment)
        .where(Payment.delivery_id.is_(None), Payment.result_due_at <= now)
        .order_by(Payment.result_due_at, Payment.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(await session.scalars(statement))


async def assign_payments(session: AsyncSession, delivery_id: UUID, payment_ids: list[int]) -> None:
    await session.execute(
        update(Payment).where(Payment.id.in_(payment_ids)).values(delivery_id=delivery_id)
    )


# --- faults --------------------------------------------------------------------------------


def in_force(now: datetime) -> Any:
    return and_(
        Fault.cleared_at.is_(None),
        or_(Fault.active_until.is_(None), Fault.active_until > now),
        or_(Fault.max_count.is_(None), Fault.applied < Fault.max_count),
    )


async def faults_in_force(
    session: AsyncSession,
    provider_ids: Collection[UUID],
    kinds: Collection[str],
    now: datetime,
    *,
    lock: bool = False,
) -> list[Fault]:
    """The faults in force for these providers (theirs and everyone's), oldest first; locked
    when the caller will use some of them up."""
    statement = (
        select(Fault)
        .where(
            in_force(now),
            Fault.kind.in_(kinds),
            or_(Fault.provider_id.is_(None), Fault.provider_id.in_(provider_ids)),
        )
        .order_by(Fault.created_at, Fault.id)
    )
    if lock:
        statement = statement.with_for_update()
    return list(await session.scalars(statement))


async def count_calls(session: AsyncSession, fault_ids: Sequence[UUID]) -> dict[UUID, int]:
    """Counts one more call seen by each fault; answers each one's count."""
    if not fault_ids:
        return {}
    rows = await session.execute(
        update(Fault)
        .where(Fault.id.in_(fault_ids))
        .values(seen=Fault.seen + 1)
        .returning(Fault.id, Fault.seen)
    )
    return {row.id: row.seen for row in rows}


async def add_applications(session: AsyncSession, taken: Mapping[UUID, int]) -> None:
    for fault_id, count in taken.items():
        if count:
            await session.execute(
                update(Fault).where(Fault.id == fault_id).values(applied=Fault.applied + count)
            )


async def clear_faults(
    session: AsyncSession, now: datetime, provider_id: UUID | None, *, every_scope: bool = False
) -> None:
    """Ends the faults of one scope (a provider's, or the global ones), or of every scope."""
    statement = update(Fault).where(Fault.cleared_at.is_(None)).values(cleared_at=now)
    if not every_scope:
        statement = statement.where(
            Fault.provider_id.is_(None) if provider_id is None else Fault.provider_id == provider_id
        )
    await session.execute(statement)


async def list_faults(
    session: AsyncSession,
    now: datetime,
    limit: int,
    after: UUID | None,
    provider_id: UUID | None = None,
    only_in_force: bool | None = None,
) -> Sequence[Fault]:
    statement = select(Fault)
    if provider_id is not None:
        statement = statement.where(Fault.provider_id == provider_id)
    if only_in_force is not None:
        condition = in_force(now)
        statement = statement.where(condition if only_in_force else ~condition)
    return (await session.scalars(keyset(statement, Fault.id, limit, after))).all()


async def insert_injections(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        await session.execute(insert(FaultInjection), list(rows))


async def list_injections(
    session: AsyncSession,
    limit: int,
    after: UUID | None,
    filters: Mapping[str, Any],
) -> Sequence[FaultInjection]:
    statement = select(FaultInjection)
    for name, value in filters.items():
        if value is not None:
            statement = statement.where(getattr(FaultInjection, name) == value)
    return (await session.scalars(keyset(statement, FaultInjection.id, limit, after))).all()


# --- deliveries ----------------------------------------------------------------------------


async def insert_deliveries(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        await session.execute(insert(Delivery), list(rows))


def _ready(now: datetime) -> Select[Any]:
    """Due, pending deliveries nobody holds whose prerequisites are done."""
    prerequisite = aliased(Delivery)
    waiting = exists().where(
        prerequisite.id == func.any(Delivery.depends_on), prerequisite.status == PENDING
    )
    return (
        select(Delivery.id)
        .where(
            Delivery.status == PENDING,
            Delivery.next_attempt_at <= now,
            or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
            ~waiting,
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
    )


async def claim_deliveries(
    session: AsyncSession, now: datetime, lease_until: datetime, limit: int
) -> list[Delivery]:
    """Leases up to `limit` ready deliveries, counting the attempt now: a worker that dies while
    sending leaves the lease to expire and the delivery to be sent again, never lost."""
    ready = _ready(now).limit(limit).with_for_update(skip_locked=True).cte("ready")
    claimed = await session.scalars(
        update(Delivery)
        .where(Delivery.id == ready.c.id)
        .values(lease_until=lease_until, attempts=Delivery.attempts + 1)
        .returning(Delivery)
        .options(undefer(Delivery.body), undefer(Delivery.payment_numbers))
        .execution_options(populate_existing=True)
    )
    return list(claimed)


async def sent_headers(session: AsyncSession, ids: Iterable[UUID]) -> dict[UUID, dict[str, str]]:
    rows = await session.execute(
        select(Delivery.id, Delivery.sent_headers).where(Delivery.id.in_(list(ids)))
    )
    return {row.id: row.sent_headers for row in rows if row.sent_headers}


async def may_have_arrived(session: AsyncSession, delivery_id: UUID, claims: int) -> bool:
    """Whether an earlier attempt may have reached Amana without its answer being known: it
    got no answer (a timeout, a dropped connection), or it was claimed and never recorded
    (the worker died while sending). `claims` counts this attempt too."""
    recorded, unanswered = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(DeliveryAttempt.status_code.is_(None)),
            ).where(DeliveryAttempt.delivery_id == delivery_id)
        )
    ).one()
    return bool(unanswered) or recorded < claims - 1


async def last_answer(session: AsyncSession, delivery_id: UUID) -> str | None:
    """What Amana last answered 2xx to a delivery."""
    return await session.scalar(
        select(DeliveryAttempt.answer)
        .where(
            DeliveryAttempt.delivery_id == delivery_id,
            DeliveryAttempt.status_code.between(200, 299),
        )
        .order_by(DeliveryAttempt.id.desc())
        .limit(1)
    )


async def insert_attempt(session: AsyncSession, values: Mapping[str, Any]) -> None:
    await session.execute(insert(DeliveryAttempt).values(**values))


async def finish_attempt(
    session: AsyncSession, delivery_id: UUID, lease_until: datetime, values: Mapping[str, Any]
) -> bool:
    """Records an attempt's result on the delivery, unless its lease was lost meanwhile (the
    attempt then took too long and another worker owns the delivery)."""
    updated = await session.scalar(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.lease_until == lease_until)
        .values(lease_until=None, **values)
        .returning(Delivery.id)
    )
    return updated is not None


async def list_deliveries(
    session: AsyncSession, limit: int, after: UUID | None, filters: Mapping[str, Any]
) -> Sequence[Delivery]:
    statement = select(Delivery)
    for name in ("provider_id", "kind", "fault_id", "status", "verdict", "webhook_id"):
        if filters.get(name) is not None:
            statement = statement.where(getattr(Delivery, name) == filters[name])
    if filters.get("fault") is not None:
        statement = statement.where(Delivery.faults.contains([filters["fault"]]))
    return (await session.scalars(keyset(statement, Delivery.id, limit, after))).all()


async def get_delivery(session: AsyncSession, delivery_id: UUID) -> Delivery | None:
    return await session.scalar(
        select(Delivery)
        .where(Delivery.id == delivery_id)
        .options(undefer(Delivery.body), undefer(Delivery.payment_numbers))
    )


async def delivery_attempts(session: AsyncSession, delivery_id: UUID) -> Sequence[DeliveryAttempt]:
    return (
        await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.id)
        )
    ).all()


async def lock_provider(session: AsyncSession, provider_id: UUID) -> SandboxProvider | None:
    return await session.scalar(
        select(SandboxProvider).where(SandboxProvider.id == provider_id).with_for_update()
    )


async def insert_provider(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    """Inserts a provider account unless one exists (concurrent PUTs: one inserts)."""
    inserted = await session.scalar(
        insert(SandboxProvider)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[SandboxProvider.id])
        .returning(SandboxProvider.id)
    )
    return inserted is not None
