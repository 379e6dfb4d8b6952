"""Carry-over: a payment that failed for a retryable reason is added to the programme's next
payroll once, with the household's current payment details."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import select

from amana_common.db import Database
from amana_contracts.disbursement import PaymentFailedV1
from payroll.models import CarryOver, PayrollLine

from .factories import project
from .test_generation import active_programme, all_lines, generate, seed


def failure(line: dict[str, Any], payroll: dict[str, Any], *, retryable: bool) -> PaymentFailedV1:
    return PaymentFailedV1.model_validate(
        {
            "payment_id": UUID(int=int(line["id"].replace("-", ""), 16) ^ 1),
            "payment_number": "PAY-0000000001",
            "payroll_id": payroll["id"],
            "payroll_line_id": line["id"],
            "programme_id": payroll["programme_id"],
            "cycle_id": payroll["cycle_id"],
            "household_id": line["household_id"],
            "provider_id": line["provider_id"],
            "mechanism": line["mechanism"],
            "location_code": line["location_code"],
            "recipient_sex": line["recipient_sex"],
            "recipient_age_band": line["recipient_age_band"],
            "currency": "KES",
            "amount_minor": line["amount_minor"],
            "outcome": "failed",
            "reason_code": "AC04" if retryable else "MD07",
            "retryable": retryable,
            "failed_at": datetime(2026, 1, 15, tzinfo=UTC),
        }
    )


async def payroll_of_cycle(
    client: httpx.AsyncClient, database: Database, programme_id: str, sequence: int
) -> dict[str, Any]:
    triggered = await client.post(
        f"/programmes/{programme_id}/payrolls", json={"cycle_sequence": sequence}
    )
    assert triggered.status_code == 202, triggered.text
    await generate(database)
    return dict((await client.get(triggered.headers["location"])).json())


async def first_payroll_paid(
    client: httpx.AsyncClient, database: Database, checker: dict[str, str], carry_over: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """The programme and its approved cycle 1 payroll, with its lines by household number."""
    await seed(database)
    programme = await active_programme(client, carry_over=carry_over)
    first = await payroll_of_cycle(client, database, programme["id"], 1)
    assert (await client.post(f"/payrolls/{first['id']}/approve", headers=checker)).is_success
    lines = {line["household_number"]: line for line in await all_lines(client, first["id"])}
    return programme, first, lines


async def test_a_retryable_failure_is_paid_in_the_next_payroll_once(
    client: httpx.AsyncClient, database: Database, checker: dict[str, str]
) -> None:
    programme, first, lines = await first_payroll_paid(client, database, checker, True)
    retryable = failure(lines["H0000000001"], first, retryable=True)
    final = failure(lines["H0000000002"], first, retryable=False)
    await project(database, retryable, retryable, final)  # delivered twice

    second = await payroll_of_cycle(client, database, programme["id"], 2)

    assert second["carried_over_count"] == 1
    assert second["line_count"] == first["line_count"] + 1
    assert second["total_amount_minor"] == first["total_amount_minor"] + 350_000
    carried = [
        line for line in await all_lines(client, second["id"]) if line["carried_over_payment_id"]
    ]
    assert [(c["household_number"], c["amount_minor"]) for c in carried] == [
        ("H0000000001", 350_000)
    ]
    assert carried[0]["carried_over_payment_id"] == str(retryable.payment_id)

    # The carried line fails again: it is not carried a second time.
    assert (await client.post(f"/payrolls/{second['id']}/approve", headers=checker)).is_success
    await project(database, failure(carried[0], second, retryable=True))
    third = await payroll_of_cycle(client, database, programme["id"], 3)
    assert third["carried_over_count"] == 0
    async with database.sessionmaker() as session:
        outcomes = (await session.execute(select(CarryOver.outcome))).scalars().all()
    assert outcomes == ["carried"]


async def test_a_rejected_payroll_gives_its_carry_overs_back(
    client: httpx.AsyncClient, database: Database, checker: dict[str, str]
) -> None:
    programme, first, lines = await first_payroll_paid(client, database, checker, True)
    await project(database, failure(lines["H0000000009"], first, retryable=True))
    second = await payroll_of_cycle(client, database, programme["id"], 2)
    assert second["carried_over_count"] == 1

    rejected = await client.post(
        f"/payrolls/{second['id']}/reject", json={"reason": "Redo"}, headers=checker
    )
    again = await payroll_of_cycle(client, database, programme["id"], 2)

    assert rejected.status_code == 200
    assert again["carried_over_count"] == 1
    async with database.sessionmaker() as session:
        carried = (
            await session.scalars(
                select(PayrollLine.payroll_id).where(
                    PayrollLine.carried_over_payment_id.is_not(None)
                )
            )
        ).all()
    assert sorted(map(str, carried)) == sorted([second["id"], again["id"]])


async def test_without_carry_over_failures_wait_unused(
    client: httpx.AsyncClient, database: Database, checker: dict[str, str]
) -> None:
    programme, first, lines = await first_payroll_paid(client, database, checker, False)
    await project(database, failure(lines["H0000000001"], first, retryable=True))

    second = await payroll_of_cycle(client, database, programme["id"], 2)

    assert second["carried_over_count"] == 0
