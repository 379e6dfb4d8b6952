"""Payrolls, providers and signed webhooks as the other services and PSPs send them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.db import Database
from amana_contracts.payroll import PayrollApprovedV1, PayrollLineV1, RecipientLineV1
from amana_contracts.provider import DeliveryV1, FeeModelV1, FileProfileV1, ProviderRegisteredV1
from amana_contracts.psp import PaymentResult
from amana_contracts.registry import AccountV1, IdentifierV1
from disbursement import channels, service
from disbursement.domain import Reconciliation, Totals, reconcile
from disbursement.models import Payment, Payroll

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEY = b"k" * 32


def line(provider_id: UUID, amount: int = 250_000, index: int = 0) -> PayrollLineV1:
    return PayrollLineV1(
        line_id=uuid7(),
        household_id=uuid7(),
        household_number=f"H{index:010d}",
        location_code="KE-047-0101",
        recipient=RecipientLineV1(
            member_id=uuid7(),
            given_name="Amina",
            family_name="Otieno",
            sex="female",
            age_band="35-59",
            identifier=IdentifierV1(scheme="national_id", value=f"{12345678 + index}"),
            phone="+254700000001",
        ),
        provider_id=provider_id,
        mechanism="mobile_money",
        account=AccountV1(kind="msisdn", value="+254700000001"),
        amount_minor=amount,
    )


def chunks(
    lines: list[PayrollLineV1],
    per_chunk: int = 1000,
    payroll_id: UUID | None = None,
    window_end: date = date(2026, 12, 31),
    **header: Any,
) -> list[PayrollApprovedV1]:
    parts = [lines[i : i + per_chunk] for i in range(0, len(lines), per_chunk)] or [[]]
    values: dict[str, Any] = {
        "payroll_id": payroll_id or uuid7(),
        "programme_id": UUID("01930000-0000-7000-8000-00000000a001"),
        "programme_code": "CT-OVC",
        "cycle_id": UUID("01930000-0000-7000-8000-00000000c001"),
        "period_start": date(2026, 12, 1),
        "period_end": date(2026, 12, 31),
        "currency": "KES",
        "payment_window_start": date(2026, 12, 1),
        "payment_window_end": window_end,
        "approved_at": NOW,
        "approved_by": "approver-1",
        "line_count": len(lines),
        "total_amount_minor": sum(x.amount_minor for x in lines),
        "chunk_count": len(parts),
    }
    values.update(header)
    return [
        PayrollApprovedV1(**values, chunk_index=index, lines=part)
        for index, part in enumerate(parts)
    ]


def provider_snapshot(
    provider_id: UUID,
    mode: str = "api",
    base_url: str | None = "https://api.psp.example/v1",
    version: int = 1,
    status: str = "active",
) -> ProviderRegisteredV1:
    return ProviderRegisteredV1(
        provider_id=provider_id,
        code=f"PSP-{str(provider_id)[-4:]}",
        legal_name="Test PSP",
        country="KE",
        currencies=["KES"],
        status=status,
        status_reason=None if status == "active" else "paused",
        mechanisms=["mobile_money"],
        service_areas=["KE"],
        fee=FeeModelV1(currency="KES", fixed_minor=3000, basis_points=150),
        delivery=DeliveryV1(
            mode=mode,
            base_url=base_url if mode == "api" else None,
            file_profile=(
                FileProfileV1(format="csv", delimiter=";", max_records_per_file=10_000)
                if mode == "file"
                else None
            ),
        ),
        pay_points=[],
        version=version,
        updated_at=NOW,
    )


async def register_provider(database: Database, provider_id: UUID, **options: Any) -> None:
    async with database.sessionmaker() as session, session.begin():
        await service.apply_provider_snapshot(session, provider_snapshot(provider_id, **options))


async def approve(
    database: Database, payroll: list[PayrollApprovedV1], batch_size: int = 1000
) -> list[str]:
    """Delivers every chunk, each in its own transaction as the consumer does."""
    outcomes = []
    for chunk in payroll:
        async with database.sessionmaker() as session, session.begin():
            outcomes.append(await service.receive_payroll_chunk(session, chunk, batch_size, NOW))
    return outcomes


async def payments_of(database: Database, payroll_id: UUID) -> list[Payment]:
    async with database.sessionmaker() as session:
        statement = select(Payment).where(Payment.payroll_id == payroll_id).order_by(Payment.number)
        return list((await session.scalars(statement)).all())


async def payroll_row(database: Database, payroll_id: UUID) -> Payroll:
    async with database.sessionmaker() as session:
        payroll = await session.get(Payroll, payroll_id)
        assert payroll is not None
        return payroll


async def reconciliation(database: Database, payroll_id: UUID) -> Reconciliation:
    async with database.sessionmaker() as session:
        return await _reconciliation(session, payroll_id)


async def _reconciliation(session: AsyncSession, payroll_id: UUID) -> Reconciliation:
    payroll = await session.get(Payroll, payroll_id)
    assert payroll is not None
    rows = await session.execute(
        select(Payment.status, func.count(), func.sum(Payment.amount_minor))
        .where(Payment.payroll_id == payroll_id)
        .group_by(Payment.status)
    )
    return reconcile(
        Totals(payroll.line_count, payroll.total_amount_minor),
        [(status, int(n), int(amount)) for status, n, amount in rows.all()],
    )


async def assert_balanced(database: Database, payroll_id: UUID) -> Reconciliation:
    """settled + failed + expired + reversed + pending + sent = the payroll, count and amount."""
    result = await reconciliation(database, payroll_id)
    assert result.balanced, result
    return result


def result(
    number: str,
    status: str = "settled",
    amount: int = 250_000,
    reference: str | None = None,
    reason: str | None = None,
    currency: str = "KES",
) -> PaymentResult:
    return PaymentResult(
        payment_number=number,
        status=status,
        amount_minor=amount,
        currency=currency,
        provider_reference=reference or f"REF-{number}",
        occurred_at=NOW + timedelta(hours=1),
        reason_code=reason,
    )


def webhook_body(*results: PaymentResult) -> str:
    return json.dumps(
        {"type": "payment.results", "results": [r.model_dump(mode="json") for r in results]}
    )


def signed(
    secret: str, body: str, webhook_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    headers = channels.sign(
        secret, webhook_id or f"msg_{uuid7().hex}", at or datetime.now(UTC), body
    )
    return {**headers, "content-type": "application/json"}
