"""PayrollApproved chunks become payments only when the payroll is whole and consistent."""

from uuid import UUID

from sqlalchemy import func, select, text
from uuid6 import uuid7

from amana_common.db import Database
from disbursement.domain import compose_batches, is_payment_number
from disbursement.models import Batch, Payment, PayrollChunk

from .factories import (
    approve,
    assert_balanced,
    chunks,
    line,
    payments_of,
    payroll_row,
    register_provider,
)

A = UUID("01930000-0000-7000-8000-0000000000a1")
B = UUID("01930000-0000-7000-8000-0000000000b2")


async def count(database: Database, model: type, **where: object) -> int:
    async with database.sessionmaker() as session:
        statement = select(func.count()).select_from(model)
        for name, value in where.items():
            statement = statement.where(getattr(model, name) == value)
        return int(await session.scalar(statement) or 0)


async def test_a_whole_payroll_is_released_as_payments_and_batches(database: Database) -> None:
    await register_provider(database, A)
    lines = [line(A if i % 3 else B, 100_000 + i, i) for i in range(25)]
    payroll = chunks(lines, per_chunk=10)

    outcomes = await approve(database, payroll, batch_size=4)

    assert outcomes == ["staged", "staged", "released"]
    payroll_id = payroll[0].payroll_id
    payments = await payments_of(database, payroll_id)
    assert len(payments) == 25
    assert {p.payroll_line_id for p in payments} == {x.line_id for x in lines}
    assert all(is_payment_number(p.number) for p in payments)
    assert all(p.status == "pending" and p.currency == "KES" for p in payments)
    assert (await payroll_row(database, payroll_id)).status == "released"
    assert await count(database, PayrollChunk, payroll_id=payroll_id) == 0, "the stage is dropped"
    # The batches the database cut are the ones the domain rule gives.
    async with database.sessionmaker() as session:
        batches = (await session.scalars(select(Batch).where(Batch.payroll_id == payroll_id))).all()
    expected = compose_batches(
        [(x.provider_id, x.amount_minor) for x in sorted(lines, key=lambda x: (0, x.line_id))],
        batch_size=4,
    )
    assert sorted((b.provider_id, b.sequence, b.payment_count) for b in batches) == sorted(
        (p.provider_id, p.sequence, p.payment_count) for p in expected
    )
    assert sum(b.total_amount_minor for b in batches) == sum(x.amount_minor for x in lines)
    reconciliation = await assert_balanced(database, payroll_id)
    assert reconciliation.open.count == 25


async def test_a_redelivered_chunk_changes_nothing(database: Database) -> None:
    payroll = chunks([line(A, index=i) for i in range(4)], per_chunk=2)

    assert await approve(database, [payroll[0], payroll[0], payroll[1], payroll[1]]) == [
        "staged",
        "duplicate",
        "released",
        "ignored",
    ]
    assert len(await payments_of(database, payroll[0].payroll_id)) == 4
    await assert_balanced(database, payroll[0].payroll_id)


async def test_chunks_in_any_order(database: Database) -> None:
    payroll = chunks([line(A, index=i) for i in range(6)], per_chunk=2)

    assert await approve(database, list(reversed(payroll))) == ["staged", "staged", "released"]


async def test_totals_that_do_not_match_the_header_hold_the_payroll(database: Database) -> None:
    lines = [line(A, index=i) for i in range(4)]
    payroll = chunks(lines, per_chunk=2, total_amount_minor=999)

    assert await approve(database, payroll) == ["staged", "held"]

    held = await payroll_row(database, payroll[0].payroll_id)
    assert held.status == "held"
    assert "999" in (held.hold_reason or "")
    assert await payments_of(database, held.id) == [], "nothing of a held payroll is paid"


async def test_a_chunk_with_another_header_or_other_lines_holds_the_payroll(
    database: Database,
) -> None:
    payroll = chunks([line(A, index=i) for i in range(4)], per_chunk=2)
    other_header = payroll[1].model_copy(update={"line_count": 5})
    assert await approve(database, [payroll[0], other_header]) == ["staged", "held"]

    second = chunks([line(A, index=i) for i in range(4)], per_chunk=2)
    changed = second[0].model_copy(update={"lines": [line(A), line(A)]})
    assert await approve(database, [second[0], changed]) == ["staged", "held"]
    assert (await payroll_row(database, second[0].payroll_id)).hold_reason == (
        "chunk 0 arrived twice with other lines"
    )


async def test_a_repeated_line_holds_the_payroll_and_pays_nothing(database: Database) -> None:
    repeated = line(A)
    payroll = chunks([repeated, line(A), repeated, line(A)], per_chunk=2)

    assert await approve(database, payroll) == ["staged", "held"]
    assert await payments_of(database, payroll[0].payroll_id) == []
    assert await count(database, Batch, payroll_id=payroll[0].payroll_id) == 0


async def test_an_empty_payroll_is_reconciled_at_once(database: Database) -> None:
    payroll = chunks([], payroll_id=uuid7())

    assert await approve(database, payroll) == ["released"]
    assert (await payroll_row(database, payroll[0].payroll_id)).status == "reconciled"


async def test_payment_numbers_from_sql_agree_with_python_stdnum(database: Database) -> None:
    from disbursement.domain import payment_number

    samples = [1, 9, 42, 97, 1000, 123_456_789, 9_999_999_999]
    async with database.sessionmaker() as session:
        numbers = [
            await session.scalar(text("SELECT payment_number(:n)"), {"n": n}) for n in samples
        ]
    assert numbers == [payment_number(n) for n in samples]


async def test_payment_numbers_are_unique_by_constraint(database: Database) -> None:
    payroll = chunks([line(A, index=i) for i in range(3)])
    await approve(database, payroll)
    async with database.sessionmaker() as session:
        constraint = await session.scalar(
            text(
                "SELECT count(*) FROM pg_constraint WHERE conname = 'uq_payments_number' "
                "AND contype = 'u'"
            )
        )
    assert constraint == 1
    assert await count(database, Payment) >= 3
