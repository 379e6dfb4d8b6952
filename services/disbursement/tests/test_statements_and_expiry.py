"""Statements (CSV, camt.053) match like webhooks; payments past their window expire."""

from datetime import UTC, date, datetime
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text

from amana_common.db import Database
from amana_common.testing.databases import outbox_events
from amana_contracts.disbursement import PaymentFailedV1
from disbursement.jobs import ExpiryJob
from disbursement.settings import DisbursementSettings
from disbursement.statements import CSV_HEADER

from .factories import approve, assert_balanced, chunks, line, payments_of, register_provider

A = UUID("01930000-0000-7000-8000-0000000000a1")


async def released(database: Database, count: int, **header: object) -> tuple[UUID, list[str]]:
    await register_provider(database, A)
    payroll = chunks([line(A, index=i) for i in range(count)], **header)  # type: ignore[arg-type]
    await approve(database, payroll)
    payroll_id = payroll[0].payroll_id
    return payroll_id, [p.number for p in await payments_of(database, payroll_id)]


def csv_statement(*rows: str) -> bytes:
    return ("\r\n".join([",".join(CSV_HEADER), *rows]) + "\r\n").encode()


async def upload(client: httpx.AsyncClient, body: bytes, media: str = "text/csv") -> httpx.Response:
    return await client.post(
        "/statements",
        params={"provider_id": str(A)},
        content=body,
        headers={"content-type": media},
    )


async def test_a_csv_statement_is_matched_and_uploading_it_again_changes_nothing(
    client: httpx.AsyncClient, database: Database
) -> None:
    payroll_id, numbers = await released(database, 3)
    body = csv_statement(
        f"{numbers[0]},settled,250000,KES,ST-1,2026-12-02T10:00:00Z,,0",
        f"{numbers[1]},failed,250000,KES,ST-2,2026-12-02T10:00:00Z,NCOL,",
        "P999999999999,settled,250000,KES,ST-3,2026-12-02T10:00:00Z,,",
    )

    response = await upload(client, body)

    assert response.status_code == 201, response.text
    receipt = response.json()
    assert (receipt["statement"]["applied"], receipt["statement"]["exceptions"]) == (2, 1)
    assert receipt["exception_results"][0]["exception"] == "unknown_payment"
    again = await upload(client, body)
    assert again.json()["replayed"] is True
    statuses = [p.status for p in await payments_of(database, payroll_id)]
    assert sorted(statuses) == ["failed", "pending", "settled"]
    await assert_balanced(database, payroll_id)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"number,status\r\nP1,settled\r\n", 422),
        (csv_statement("P1,settled,-5,KES,R,2026-12-02T10:00:00Z,,"), 422),
        (csv_statement("P1,settled,5,KES,R"), 422),
        (b"\xff\xfe", 422),
    ],
)
async def test_a_bad_statement_is_refused_whole(
    client: httpx.AsyncClient, database: Database, body: bytes, status: int
) -> None:
    payroll_id, _ = await released(database, 1)

    response = await upload(client, body)

    assert response.status_code == status, response.text
    assert (await payments_of(database, payroll_id))[0].status == "pending"


CAMT = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
 <BkToCstmrStmt>
  <GrpHdr><MsgId>STMT-1</MsgId><CreDtTm>2026-12-03T08:00:00Z</CreDtTm></GrpHdr>
  <Stmt>
   <Id>S1</Id>
   <Acct><Id><Othr><Id>PSP-FLOAT</Id></Othr></Id></Acct>
   {entries}
  </Stmt>
 </BkToCstmrStmt>
</Document>"""

ENTRY = """<Ntry>
 <Amt Ccy="KES">{amount}</Amt><CdtDbtInd>DBIT</CdtDbtInd>{reversal}
 <Sts><Cd>{status}</Cd></Sts>
 <BookgDt><DtTm>2026-12-02T10:00:00Z</DtTm></BookgDt>
 <AcctSvcrRef>{reference}</AcctSvcrRef>
 <BkTxCd><Prtry><Cd>PAYOUT</Cd></Prtry></BkTxCd>
 <NtryDtls><TxDtls><Refs><EndToEndId>{number}</EndToEndId></Refs>{returned}</TxDtls></NtryDtls>
</Ntry>"""


def entry(number: str, reference: str, status: str = "BOOK", reason: str | None = None) -> str:
    returned = f"<RtrInf><Rsn><Cd>{reason}</Cd></Rsn></RtrInf>" if reason else ""
    return ENTRY.format(
        amount="2500.00",
        reversal="",
        status=status,
        reference=reference,
        number=number,
        returned=returned,
    )


async def test_a_camt053_statement_is_matched(
    client: httpx.AsyncClient, database: Database
) -> None:
    payroll_id, numbers = await released(database, 3)
    body = CAMT.format(
        entries=entry(numbers[0], "BK-1")
        + entry(numbers[1], "BK-2", reason="AC04")
        + entry(numbers[2], "BK-3", status="PDNG")
    )

    response = await upload(client, body.encode(), "application/xml")

    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["statement"]["applied"] == 2 and receipt["not_booked"] == 1
    payments = {p.number: p for p in await payments_of(database, payroll_id)}
    assert payments[numbers[0]].provider_reference == "BK-1"
    assert (payments[numbers[1]].status, payments[numbers[1]].reason_code) == ("failed", "AC04")
    await assert_balanced(database, payroll_id)


async def test_xml_with_entities_or_another_shape_is_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    await released(database, 1)
    bomb = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><Document>&a;</Document>'
    assert (await upload(client, bomb, "application/xml")).status_code == 422
    assert (await upload(client, b"<Other/>", "application/xml")).status_code == 422
    assert (await upload(client, b"{}", "application/json")).status_code == 415


async def test_open_payments_expire_after_their_window_and_the_payroll_reconciles(
    client: httpx.AsyncClient, database: Database, settings: DisbursementSettings
) -> None:
    payroll_id, numbers = await released(database, 3, payment_window_end=date(2026, 11, 1))
    await upload(
        client, csv_statement(f"{numbers[0]},settled,250000,KES,ST-1,2026-11-01T10:00:00Z,,")
    )
    job = ExpiryJob(settings.model_copy(update={"expiry_batch_size": 1}), database)

    assert await job.expire_all_due() == 2

    payments = await payments_of(database, payroll_id)
    assert sorted(p.status for p in payments) == ["expired", "expired", "settled"]
    events = [e for e in await outbox_events(database) if e.name == "PaymentFailed"]
    failed = [PaymentFailedV1.model_validate(e.data) for e in events]
    assert {(f.outcome, f.reason_code, f.retryable) for f in failed} == {("expired", "EXPD", True)}
    result = await assert_balanced(database, payroll_id)
    assert result.complete
    assert (await client.get(f"/reconciliation/{payroll_id}")).json()["payroll"]["status"] == (
        "reconciled"
    )
    late = csv_statement(f"{numbers[1]},settled,250000,KES,ST-9,2026-12-02T10:00:00Z,,")
    assert (await upload(client, late)).json()["exception_results"][0]["exception"] == (
        "result_after_expiry"
    )
    assert await job.expire_all_due() == 0
    assert datetime.now(UTC) > payments[0].pay_by


async def test_a_payroll_whose_last_payments_closed_concurrently_is_reconciled_by_the_sweep(
    client: httpx.AsyncClient, database: Database, settings: DisbursementSettings
) -> None:
    # Two transactions that close a payroll's last two payments at once each see the other's
    # payment still open, so neither reconciles: the state they leave is what is set up here.
    payroll_id, _ = await released(database, 2)
    async with database.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE payments SET status = 'settled', provider_reference = 'REF-' || number, "
                "status_changed_at = now() WHERE payroll_id = :payroll"
            ),
            {"payroll": payroll_id},
        )
    job = ExpiryJob(settings, database)

    assert await job.reconcile_missed() == 1
    assert await job.reconcile_missed() == 0

    reconciled = [e for e in await outbox_events(database) if e.name == "PayrollReconciled"]
    assert [e.subject for e in reconciled] == [str(payroll_id)]
    assert (await client.get(f"/reconciliation/{payroll_id}")).json()["payroll"]["status"] == (
        "reconciled"
    )
