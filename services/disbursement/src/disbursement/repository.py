"""Disbursement queries. Nothing here commits: the request or message that called owns the
session. Bulk work is set-based: a release is one INSERT ... SELECT for batches and payments
together, results are one SELECT ... FOR UPDATE and one UPDATE ... FROM unnest per webhook."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Row,
    any_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.pagination import keyset
from disbursement.domain import OPEN, Status
from disbursement.models import (
    Batch,
    Payment,
    Payroll,
    PayrollChunk,
    Provider,
    ProviderBreaker,
    ProviderChannel,
    ReconciliationException,
    Statement,
    WebhookMessage,
    WebhookSecret,
)

OPEN_VALUES = sorted(status.value for status in OPEN)

# --- payrolls --------------------------------------------------------------------------------


INSERT_PAYROLL_IF_NEW = pg_insert(Payroll).on_conflict_do_nothing()
LOCK_PAYROLL = (
    select(Payroll)
    .where(Payroll.id == bindparam("payroll_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def insert_payroll_if_new(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(INSERT_PAYROLL_IF_NEW, values)


async def lock_payroll(session: AsyncSession, payroll_id: UUID) -> Payroll | None:
    return (await session.scalars(LOCK_PAYROLL, {"payroll_id": payroll_id})).one_or_none()


async def get_payroll(session: AsyncSession, payroll_id: UUID) -> Payroll | None:
    return await session.get(Payroll, payroll_id)


STAGE_CHUNK = text(
    """
INSERT INTO payroll_chunks (payroll_id, chunk_index, content_sha256, line_count, amount_minor,
                            lines, received_at)
VALUES (:payroll_id, :chunk_index, :content_sha256, :line_count, :amount_minor,
        CAST(:lines AS jsonb), :received_at)
ON CONFLICT DO NOTHING RETURNING chunk_index
"""
)


async def stage_chunk(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Stages one chunk, its lines passed as JSON text (PostgreSQL parses them once); False
    when a chunk of that index is staged already."""
    staged = await session.scalar(STAGE_CHUNK, values)
    return staged is not None


async def staged_chunk_hash(session: AsyncSession, payroll_id: UUID, index: int) -> str | None:
    return await session.scalar(
        select(PayrollChunk.content_sha256).where(
            PayrollChunk.payroll_id == payroll_id, PayrollChunk.chunk_index == index
        )
    )


STAGED_TOTALS = select(
    func.count(),
    func.coalesce(func.sum(PayrollChunk.line_count), 0),
    func.coalesce(func.sum(PayrollChunk.amount_minor), 0),
).where(PayrollChunk.payroll_id == bindparam("payroll_id"))


async def staged_totals(session: AsyncSession, payroll_id: UUID) -> tuple[int, int, int]:
    """(chunks, lines, amount) staged for the payroll."""
    row = (await session.execute(STAGED_TOTALS, {"payroll_id": payroll_id})).one()
    return int(row[0]), int(row[1]), int(row[2])


# The staged lines, expanded once (MATERIALIZED), numbered per provider in chunk and line order
# and cut into batches of :batch_size (domain.compose_batches is the same rule); the batches
# and then the payments are inserted from them in the same statement. Each line draws its
# number's sequence value as a column: payment_number(nextval(...)) would not be inlined (a
# volatile argument used more than once), and a SQL function called per row costs three times
# as much.
RELEASE = text(
    """
WITH lines AS MATERIALIZED (
  SELECT l.*, nextval('payment_number_seq') AS number_sequence, (row_number() OVER (
      PARTITION BY l.provider_id ORDER BY c.chunk_index, l.line_id) - 1) / :batch_size + 1
      AS batch_sequence
  FROM payroll_chunks c
  CROSS JOIN LATERAL jsonb_to_recordset(c.lines) AS l(
    line_id uuid, household_id uuid, household_number text, location_code text,
    recipient jsonb, provider_id uuid, mechanism text, pay_point_id uuid, account jsonb,
    amount_minor bigint, carried_over_payment_id uuid)
  WHERE c.payroll_id = :payroll_id
),
new_batches AS (
  INSERT INTO batches (id, payroll_id, provider_id, currency, sequence, payment_count,
                       total_amount_minor, status, attempts, next_attempt_at, created_at, version)
  SELECT uuid7(), :payroll_id, provider_id, :currency, batch_sequence, count(*),
         sum(amount_minor), 'ready', 0, :now, :now, 1
  FROM lines GROUP BY provider_id, batch_sequence
  RETURNING id, provider_id, sequence
)
INSERT INTO payments (
  id, number, payroll_id, payroll_line_id, programme_id, cycle_id, household_id,
  household_number, location_code, recipient_member_id, recipient_given_name,
  recipient_family_name, recipient_sex, recipient_age_band, recipient_identifier,
  recipient_phone, provider_id, mechanism, pay_point_id, account, currency, amount_minor,
  carried_over_payment_id, batch_id, status, status_changed_at, pay_by, fee_minor,
  created_at, version)
SELECT uuid7(), payment_number(l.number_sequence), :payroll_id, l.line_id,
  :programme_id, :cycle_id, l.household_id, l.household_number, l.location_code,
  (l.recipient->>'member_id')::uuid, l.recipient->>'given_name', l.recipient->>'family_name',
  l.recipient->>'sex', l.recipient->>'age_band', NULLIF(l.recipient->'identifier', 'null'),
  l.recipient->>'phone', l.provider_id, l.mechanism, l.pay_point_id,
  NULLIF(l.account, 'null'), :currency, l.amount_minor, l.carried_over_payment_id, b.id,
  :pending, :now, :pay_by, 0, :now, 1
FROM lines l
JOIN new_batches b ON b.provider_id = l.provider_id AND b.sequence = l.batch_sequence
"""
)


async def release_payroll(
    session: AsyncSession, payroll: Payroll, batch_size: int, now: datetime
) -> None:
    """Creates the payroll's batches and payments from its staged chunks (one statement), then
    drops the stage. A line id seen before violates uq_payments_payroll_line_id."""
    await session.execute(
        RELEASE,
        {
            "payroll_id": payroll.id,
            "programme_id": payroll.programme_id,
            "cycle_id": payroll.cycle_id,
            "currency": payroll.currency,
            "pay_by": payroll.pay_by,
            "batch_size": batch_size,
            "pending": Status.pending.value,
            "now": now,
        },
    )
    await session.execute(delete(PayrollChunk).where(PayrollChunk.payroll_id == payroll.id))


OPEN_PAYROLLS_WITH_NOTHING_OPEN = (
    select(Payroll)
    .where(
        Payroll.id == any_(bindparam("payroll_ids", type_=ARRAY(PG_UUID(as_uuid=True)))),
        Payroll.status == "released",
        ~exists().where(Payment.payroll_id == Payroll.id, Payment.status.in_(OPEN_VALUES)),
    )
    .order_by(Payroll.id)
    .with_for_update()
)


async def open_payrolls_with_nothing_open(
    session: AsyncSession, payroll_ids: Sequence[UUID]
) -> list[Payroll]:
    """Released payrolls among `payroll_ids` with no pending or sent payment left, locked."""
    if not payroll_ids:
        return []
    parameters = {"payroll_ids": list(payroll_ids)}
    return list((await session.scalars(OPEN_PAYROLLS_WITH_NOTHING_OPEN, parameters)).all())


async def released_payrolls_with_nothing_open(session: AsyncSession, limit: int) -> list[UUID]:
    """Released payrolls with no pending or sent payment left (not locked: the caller checks
    again under lock)."""
    statement = (
        select(Payroll.id)
        .where(
            Payroll.status == "released",
            ~exists().where(Payment.payroll_id == Payroll.id, Payment.status.in_(OPEN_VALUES)),
        )
        .order_by(Payroll.id)
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())


async def totals_by_status(
    session: AsyncSession, payroll_id: UUID
) -> list[tuple[str, int, int, int]]:
    """(status, count, amount, fees) of a payroll's payments."""
    rows = await session.execute(
        select(
            Payment.status,
            func.count(),
            func.coalesce(func.sum(Payment.amount_minor), 0),
            func.coalesce(func.sum(Payment.fee_minor), 0),
        )
        .where(Payment.payroll_id == payroll_id)
        .group_by(Payment.status)
    )
    return [(status, int(n), int(amount), int(fees)) for status, n, amount, fees in rows.all()]


async def exception_count(session: AsyncSession, payroll_id: UUID) -> int:
    return int(
        await session.scalar(
            select(func.count()).where(ReconciliationException.payroll_id == payroll_id)
        )
        or 0
    )


async def list_payrolls(
    session: AsyncSession, limit: int, after: UUID | None, status: str | None
) -> list[Payroll]:
    statement = keyset(select(Payroll), Payroll.id, limit, after)
    if status is not None:
        statement = statement.where(Payroll.status == status)
    return list((await session.scalars(statement)).all())


# --- payments --------------------------------------------------------------------------------

# Plain SQL (no ORM result processing: a webhook of 5,000 results loads 5,000 rows). The
# reporting provider's fee terms come along on every row (NULL when it is not known here).
LOCK_PAYMENTS = text(
    """
SELECT p.id, p.number, p.payroll_id, p.payroll_line_id, p.programme_id, p.cycle_id,
  p.household_id, p.provider_id, p.mechanism, p.location_code, p.recipient_sex,
  p.recipient_age_band, p.currency, p.amount_minor, p.status, p.provider_reference,
  p.reason_code, p.fee_minor, f.fee_fixed_minor, f.fee_basis_points, f.fee_currency
FROM payments p LEFT JOIN providers f ON f.id = :provider_id
WHERE p.number = ANY(CAST(:numbers AS text[]))
ORDER BY p.number
FOR UPDATE OF p
"""
)


async def lock_payments_by_number(
    session: AsyncSession, numbers: Sequence[str], reporting_provider: UUID
) -> list[Row[Any]]:
    """The payments with these numbers, locked in number order (so that two webhooks naming
    the same payments never deadlock), each with the reporting provider's fee terms
    (`fee_fixed_minor`, `fee_basis_points`, `fee_currency`: None when the provider is not
    known here), read in the same round trip."""
    if not numbers:
        return []
    parameters = {"numbers": list(numbers), "provider_id": reporting_provider}
    result: Any = await session.execute(LOCK_PAYMENTS, parameters)
    return list(result.all())


# The new outcomes and their events in one statement (one round trip per webhook): the UPDATE
# runs as a data-modifying CTE, the events go to the outbox as its rows.
WRITE_OUTCOMES = text(
    """
WITH changed AS (
  UPDATE payments p SET status = u.status, provider_reference = u.provider_reference,
    reason_code = u.reason_code, fee_minor = u.fee_minor,
    settled_at = COALESCE(u.settled_at, p.settled_at),
    failed_at = COALESCE(u.failed_at, p.failed_at),
    reversed_at = COALESCE(u.reversed_at, p.reversed_at), status_changed_at = :now,
    version = p.version + 1
  FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:references AS text[]),
              CAST(:reasons AS text[]), CAST(:fees AS bigint[]),
              CAST(:settled AS timestamptz[]), CAST(:failed AS timestamptz[]),
              CAST(:reversed AS timestamptz[]))
    AS u(id, status, provider_reference, reason_code, fee_minor, settled_at, failed_at,
         reversed_at)
  WHERE p.id = u.id
)
INSERT INTO outbox (event_id, topic, key, event_type, payload)
SELECT * FROM unnest(CAST(:event_ids AS uuid[]), CAST(:topics AS text[]),
                     CAST(:keys AS text[]), CAST(:event_types AS text[]),
                     CAST(:payloads AS bytea[]))
"""
)


OUTCOME_PARAMETERS = (
    ("id", "ids"),
    ("status", "statuses"),
    ("reference", "references"),
    ("reason", "reasons"),
    ("fee", "fees"),
    ("settled", "settled"),
    ("failed", "failed"),
    ("reversed", "reversed"),
)
OUTBOX_PARAMETERS = (
    ("event_id", "event_ids"),
    ("topic", "topics"),
    ("key", "keys"),
    ("event_type", "event_types"),
    ("payload", "payloads"),
)


async def write_outcomes(
    session: AsyncSession,
    changes: Sequence[dict[str, Any]],
    outbox_rows: Sequence[dict[str, Any]],
    now: datetime,
) -> None:
    """Writes each payment's new outcome (`changes` have the keys of OUTCOME_PARAMETERS) and
    adds their events to the outbox (`amana_common.events.outbox_row` rows)."""
    if not changes and not outbox_rows:
        return
    arrays = {parameter: [row[key] for row in changes] for key, parameter in OUTCOME_PARAMETERS}
    events = {parameter: [row[key] for row in outbox_rows] for key, parameter in OUTBOX_PARAMETERS}
    await session.execute(WRITE_OUTCOMES, {**arrays, **events, "now": now})


async def add_exceptions(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(ReconciliationException), list(rows))


EXPIRE_DUE = text(
    """
WITH due AS (
  SELECT id FROM payments
  WHERE status IN ('pending', 'sent') AND pay_by <= :now
  ORDER BY pay_by LIMIT :limit FOR UPDATE SKIP LOCKED
)
UPDATE payments p SET status = :expired, reason_code = :reason,
  failed_at = :now, status_changed_at = :now, version = p.version + 1
FROM due WHERE p.id = due.id
RETURNING p.id, p.number, p.payroll_id, p.payroll_line_id, p.programme_id, p.cycle_id,
  p.household_id, p.provider_id, p.mechanism, p.location_code, p.recipient_sex,
  p.recipient_age_band, p.currency, p.amount_minor
"""
)


async def expire_due(
    session: AsyncSession, now: datetime, limit: int, reason: str
) -> list[Row[Any]]:
    """Expires up to `limit` open payments past their window; answers them."""
    parameters = {"now": now, "limit": limit, "reason": reason, "expired": Status.expired.value}
    result = await session.execute(EXPIRE_DUE, parameters)
    return list(result.all())


async def payment_by_number(session: AsyncSession, number: str) -> Payment | None:
    return (await session.scalars(select(Payment).where(Payment.number == number))).one_or_none()


async def list_payments(
    session: AsyncSession,
    *,
    limit: int,
    after: UUID | None,
    payroll_id: UUID | None,
    provider_id: UUID | None,
    batch_id: UUID | None,
    status: str | None,
) -> list[Payment]:
    statement = keyset(select(Payment), Payment.id, limit, after)
    for column, value in (
        (Payment.payroll_id, payroll_id),
        (Payment.provider_id, provider_id),
        (Payment.batch_id, batch_id),
        (Payment.status, status),
    ):
        if value is not None:
            statement = statement.where(column == value)
    return list((await session.scalars(statement)).all())


async def payments_of_batch(session: AsyncSession, batch_id: UUID) -> list[Payment]:
    statement = select(Payment).where(Payment.batch_id == batch_id).order_by(Payment.number)
    return list((await session.scalars(statement)).all())


async def mark_batch_payments_sent(session: AsyncSession, batch_id: UUID, now: datetime) -> None:
    await session.execute(
        update(Payment)
        .where(Payment.batch_id == batch_id, Payment.status == Status.pending.value)
        .values(status=Status.sent.value, status_changed_at=now, version=Payment.version + 1)
    )


# --- batches and dispatch --------------------------------------------------------------------


async def get_batch(session: AsyncSession, batch_id: UUID, *, lock: bool = False) -> Batch | None:
    statement = select(Batch).where(Batch.id == batch_id)
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return (await session.scalars(statement)).one_or_none()


async def list_batches(
    session: AsyncSession,
    *,
    limit: int,
    after: UUID | None,
    payroll_id: UUID | None,
    provider_id: UUID | None,
    status: str | None,
) -> list[Batch]:
    statement = keyset(select(Batch), Batch.id, limit, after)
    for column, value in (
        (Batch.payroll_id, payroll_id),
        (Batch.provider_id, provider_id),
        (Batch.status, status),
    ):
        if value is not None:
            statement = statement.where(column == value)
    return list((await session.scalars(statement)).all())


async def claim_due_api_batch(session: AsyncSession, now: datetime) -> Batch | None:
    """The next ready batch of an active api provider whose time has come, locked (SKIP
    LOCKED: several workers share the work)."""
    statement = (
        select(Batch)
        .join(Provider, Provider.id == Batch.provider_id)
        .where(
            Batch.status == "ready",
            Batch.next_attempt_at <= now,
            Provider.delivery_mode == "api",
            Provider.status == "active",
        )
        .order_by(Batch.next_attempt_at)
        .limit(1)
        .with_for_update(of=Batch, skip_locked=True)
    )
    return (await session.scalars(statement)).one_or_none()


async def lock_breaker(session: AsyncSession, provider_id: UUID) -> ProviderBreaker:
    await session.execute(
        pg_insert(ProviderBreaker)
        .values(provider_id=provider_id, state="closed", consecutive_failures=0)
        .on_conflict_do_nothing()
    )
    statement = (
        select(ProviderBreaker)
        .where(ProviderBreaker.provider_id == provider_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).one()


# --- providers and channels ------------------------------------------------------------------


async def get_provider(session: AsyncSession, provider_id: UUID) -> Provider | None:
    return await session.get(Provider, provider_id, populate_existing=True)


async def upsert_provider(session: AsyncSession, values: dict[str, Any]) -> None:
    """Replaces the projection with a snapshot of a higher version; an older one changes
    nothing (replays and reordering are harmless)."""
    statement = pg_insert(Provider).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[Provider.id],
        set_={name: statement.excluded[name] for name in values if name != "id"},
        where=Provider.version < statement.excluded.version,
    )
    await session.execute(statement)


async def set_provider_status(
    session: AsyncSession, provider_id: UUID, status: str, version: int, now: datetime
) -> None:
    await session.execute(
        update(Provider)
        .where(Provider.id == provider_id, Provider.version < version)
        .values(status=status, version=version, updated_at=now)
    )


async def valid_webhook_secrets(
    session: AsyncSession, provider_id: UUID, now: datetime
) -> list[WebhookSecret]:
    statement = (
        select(WebhookSecret)
        .where(
            WebhookSecret.provider_id == provider_id,
            or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > now),
        )
        .order_by(WebhookSecret.created_at.desc())
    )
    return list((await session.scalars(statement)).all())


SEALED_WEBHOOK_SECRETS = text(
    """
SELECT secret FROM webhook_secrets
WHERE provider_id = :provider_id AND (expires_at IS NULL OR expires_at > :now)
ORDER BY created_at DESC
"""
)


async def sealed_webhook_secrets(
    session: AsyncSession, provider_id: UUID, now: datetime
) -> list[bytes]:
    """The sealed secrets that verify now, newest first (no ORM objects: every webhook asks)."""
    parameters = {"provider_id": provider_id, "now": now}
    return list((await session.scalars(SEALED_WEBHOOK_SECRETS, parameters)).all())


async def expire_current_secrets(
    session: AsyncSession, provider_id: UUID, expires_at: datetime
) -> None:
    """The current secret keeps verifying until `expires_at` (the rotation's overlap)."""
    await session.execute(
        update(WebhookSecret)
        .where(WebhookSecret.provider_id == provider_id, WebhookSecret.expires_at.is_(None))
        .values(expires_at=expires_at)
    )
    await session.execute(
        update(WebhookSecret)
        .where(WebhookSecret.provider_id == provider_id, WebhookSecret.expires_at > expires_at)
        .values(expires_at=expires_at)
    )


async def get_channel(session: AsyncSession, provider_id: UUID) -> ProviderChannel | None:
    return await session.get(ProviderChannel, provider_id, populate_existing=True)


async def upsert_channel(session: AsyncSession, values: dict[str, Any]) -> None:
    statement = pg_insert(ProviderChannel).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[ProviderChannel.provider_id],
            set_={name: statement.excluded[name] for name in values if name != "provider_id"},
        )
    )


# --- webhook messages ------------------------------------------------------------------------


RECORD_WEBHOOK_MESSAGE = text(
    """
INSERT INTO webhook_messages (provider_id, webhook_id, body_sha256, received_at)
VALUES (:provider_id, :webhook_id, :body_sha256, :received_at)
ON CONFLICT DO NOTHING RETURNING webhook_id
"""
)


async def record_webhook_message(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Records a verified webhook id; False when it was seen before. A concurrent request with
    the same id waits here for the first one's transaction."""
    recorded = await session.scalar(RECORD_WEBHOOK_MESSAGE, values)
    return recorded is not None


async def get_webhook_message(
    session: AsyncSession, provider_id: UUID, webhook_id: str
) -> WebhookMessage | None:
    statement = select(WebhookMessage).where(
        WebhookMessage.provider_id == provider_id, WebhookMessage.webhook_id == webhook_id
    )
    return (await session.scalars(statement)).one_or_none()


# Runs after the results are written (a later statement sees them), as the check of
# open_payrolls_with_nothing_open does; that query, under lock, stays the one that decides.
STORE_ANSWER_AND_FIND_RECONCILABLE = text(
    """
WITH stored AS (
  UPDATE webhook_messages SET answer = CAST(:answer AS jsonb)
  WHERE provider_id = :provider_id AND webhook_id = :webhook_id
)
SELECT r.id FROM payrolls r
WHERE r.id = ANY(CAST(:payroll_ids AS uuid[])) AND r.status = 'released'
  AND NOT EXISTS (
    SELECT 1 FROM payments p
    WHERE p.payroll_id = r.id AND p.status = ANY(CAST(:open_statuses AS text[])))
ORDER BY r.id
"""
)


async def store_answer_and_find_reconcilable(
    session: AsyncSession,
    provider_id: UUID,
    webhook_id: str,
    answer_json: str,
    payroll_ids: Sequence[UUID],
) -> list[UUID]:
    """Keeps the answer (JSON text, as sent) for a replay of the same webhook id; answers
    which of `payroll_ids` are released with no pending or sent payment left."""
    parameters = {
        "provider_id": provider_id,
        "webhook_id": webhook_id,
        "answer": answer_json,
        "payroll_ids": list(payroll_ids),
        "open_statuses": OPEN_VALUES,
    }
    return list((await session.scalars(STORE_ANSWER_AND_FIND_RECONCILABLE, parameters)).all())


# --- statements and exceptions ---------------------------------------------------------------


async def statement_by_hash(
    session: AsyncSession, provider_id: UUID, content_sha256: str
) -> Statement | None:
    statement = select(Statement).where(
        Statement.provider_id == provider_id, Statement.content_sha256 == content_sha256
    )
    return (await session.scalars(statement)).one_or_none()


async def get_statement(session: AsyncSession, statement_id: UUID) -> Statement | None:
    return await session.get(Statement, statement_id)


def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)


async def list_exceptions(
    session: AsyncSession,
    *,
    limit: int,
    after: UUID | None,
    payroll_id: UUID | None,
    provider_id: UUID | None,
    kind: str | None,
) -> list[ReconciliationException]:
    model = ReconciliationException
    statement = keyset(select(model), model.id, limit, after)
    for column, value in (
        (model.payroll_id, payroll_id),
        (model.provider_id, provider_id),
        (model.kind, kind),
    ):
        if value is not None:
            statement = statement.where(column == value)
    return list((await session.scalars(statement)).all())


async def export_rows(session: AsyncSession, payroll_id: UUID) -> Any:
    """Every payment of a payroll for the CSV export, streamed in number order."""
    statement = (
        select(
            Payment.number,
            Payment.household_number,
            Payment.provider_id,
            Payment.mechanism,
            Payment.currency,
            Payment.amount_minor,
            Payment.fee_minor,
            Payment.status,
            Payment.reason_code,
            Payment.provider_reference,
            Payment.status_changed_at,
        )
        .where(Payment.payroll_id == payroll_id)
        .order_by(Payment.number)
        .execution_options(yield_per=5000)
    )
    return await session.stream(statement)
