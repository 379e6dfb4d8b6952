"""Batches reach the provider: api mode over real HTTP (idempotency key, retries with backoff,
breaker, stall and requeue), file mode as CSV and pain.001 valid against the ISO schema."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import sepaxml
import xmlschema
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select, update

from amana_common.db import Database
from amana_common.guarded_http import guarded_client, refuse_unsafe_address
from amana_common.outbound import UnsafeUrl
from amana_common.testing.clients import serving
from amana_contracts.psp import PaymentBatch
from disbursement.dispatch import Dispatcher
from disbursement.models import Batch, ProviderBreaker
from disbursement.settings import DisbursementSettings

from .factories import approve, assert_balanced, chunks, line, payments_of, register_provider

API = UUID("01930000-0000-7000-8000-0000000000a1")
FILE = UUID("01930000-0000-7000-8000-0000000000f1")
PAIN_001_XSD = Path(sepaxml.__file__).parent / "schemas" / "pain.001.001.09.xsd"


class Psp:
    """A provider's API as a real HTTP server: records calls, answers as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], PaymentBatch]] = []
        self.answers: list[int] = []
        self.app = FastAPI()

        @self.app.post("/v1/batches")
        async def batches(request: Request) -> JSONResponse:
            batch = PaymentBatch.model_validate_json(await request.body())
            self.calls.append((dict(request.headers), batch))
            status = self.answers.pop(0) if self.answers else 202
            body = {"batch_id": str(batch.batch_id), "accepted": batch.payment_count}
            return JSONResponse(body if status == 202 else {"error": "x"}, status_code=status)


@pytest.fixture
async def psp() -> AsyncIterator[tuple[Psp, str]]:
    provider = Psp()
    async with serving(provider.app) as url:
        yield provider, url


def dispatch_settings(settings: DisbursementSettings, **values: Any) -> DisbursementSettings:
    return settings.model_copy(
        update={
            "allowed_api_hosts": ["127.0.0.1"],
            "dispatch_backoff_base_s": 10.0,
            "breaker_threshold": 2,
            "dispatch_max_attempts": 3,
            **values,
        }
    )


async def api_payroll(
    database: Database, client: httpx.AsyncClient, base_url: str, count: int = 5
) -> UUID:
    await register_provider(database, API, base_url=base_url + "/v1")
    response = await client.put(
        f"/channels/{API}/api-credential", json={"credential": "psp-token-0123456789"}
    )
    assert response.status_code == 204, response.text
    payroll = chunks([line(API, index=i) for i in range(count)])
    await approve(database, payroll, batch_size=2)
    await make_due(database)
    return payroll[0].payroll_id


async def batches_of(database: Database, payroll_id: UUID) -> list[Batch]:
    async with database.sessionmaker() as session:
        statement = select(Batch).where(Batch.payroll_id == payroll_id).order_by(Batch.sequence)
        return list((await session.scalars(statement)).all())


async def make_due(database: Database) -> None:
    async with database.sessionmaker() as session, session.begin():
        await session.execute(
            update(Batch).values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
        await session.execute(
            update(ProviderBreaker).values(opened_at=datetime(2000, 1, 1, tzinfo=UTC))
        )


async def test_api_batches_are_posted_once_with_their_idempotency_key(
    database: Database,
    client: httpx.AsyncClient,
    settings: DisbursementSettings,
    psp: tuple[Psp, str],
) -> None:
    provider, url = psp
    payroll_id = await api_payroll(database, client, url)
    dispatcher = Dispatcher(dispatch_settings(settings), database)

    async with guarded_client(False, 10) as http:
        while await dispatcher.dispatch_once(http):
            pass

    batches = await batches_of(database, payroll_id)
    assert [b.payment_count for b in batches] == [2, 2, 1]
    assert [(b.status, b.attempts) for b in batches] == [("sent", 1)] * 3
    keys = [headers["idempotency-key"] for headers, _ in provider.calls]
    assert sorted(keys) == sorted(str(b.id) for b in batches)
    assert {headers["authorization"] for headers, _ in provider.calls} == {
        "Bearer psp-token-0123456789"
    }
    sent = next(batch for _, batch in provider.calls if batch.payment_count == 2)
    assert sent.provider_id == API and sent.payments[0].recipient.name == "Amina Otieno"
    assert all(p.status == "sent" for p in await payments_of(database, payroll_id))
    await assert_balanced(database, payroll_id)


async def test_failures_back_off_open_the_breaker_and_stall_for_an_operator(
    database: Database,
    client: httpx.AsyncClient,
    settings: DisbursementSettings,
    psp: tuple[Psp, str],
) -> None:
    provider, url = psp
    payroll_id = await api_payroll(database, client, url, count=1)
    dispatcher = Dispatcher(dispatch_settings(settings), database)
    provider.answers = [503, 503, 503, 202]

    async with guarded_client(False, 10) as http:
        assert await dispatcher.dispatch_once(http)
        [batch] = await batches_of(database, payroll_id)
        assert (batch.status, batch.attempts) == ("ready", 1)
        assert batch.last_error == "the provider answered 503"
        assert batch.next_attempt_at <= datetime.now(UTC) + timedelta(seconds=10)
        assert not await dispatcher.dispatch_once(http), "not due before its backoff"

        await make_due(database)
        await dispatcher.dispatch_once(http)
        async with database.sessionmaker() as session:
            breaker = await session.get(ProviderBreaker, API)
            assert breaker is not None and breaker.state == "open", "two failures in a row"

        await make_due(database)
        await dispatcher.dispatch_once(http)
        [batch] = await batches_of(database, payroll_id)
        assert (batch.status, batch.attempts) == ("stalled", 3)
        assert len(provider.calls) == 3

        requeued = await client.post(f"/batches/{batch.id}/requeue")
        assert requeued.status_code == 200, requeued.text
        assert (await client.post(f"/batches/{batch.id}/requeue")).status_code == 409
        await make_due(database)
        await dispatcher.dispatch_once(http)

    [batch] = await batches_of(database, payroll_id)
    assert (batch.status, batch.attempts, batch.last_error) == ("sent", 1, None)
    assert len({headers["idempotency-key"] for headers, _ in provider.calls}) == 1


async def test_a_refused_answer_or_missing_credential_stalls_at_once(
    database: Database,
    client: httpx.AsyncClient,
    settings: DisbursementSettings,
    psp: tuple[Psp, str],
) -> None:
    provider, url = psp
    payroll_id = await api_payroll(database, client, url, count=1)
    provider.answers = [400]
    async with guarded_client(False, 10) as http:
        await Dispatcher(dispatch_settings(settings), database).dispatch_once(http)
        [batch] = await batches_of(database, payroll_id)
        assert (batch.status, batch.last_error) == ("stalled", "the provider answered 400")

        refused = dispatch_settings(settings, allowed_api_hosts=["api.psp.example"])
        await client.post(f"/batches/{batch.id}/requeue")
        await Dispatcher(refused, database).dispatch_once(http)
    [batch] = await batches_of(database, payroll_id)
    assert batch.status == "stalled"
    assert "not on the allowlist" in (batch.last_error or "") or "refused" in (
        batch.last_error or ""
    )


def test_the_connect_time_guard_refuses_private_addresses_in_production() -> None:
    refuse_unsafe_address("8.8.8.8", production=True)
    refuse_unsafe_address("127.0.0.1", production=False)
    for address in ("169.254.169.254", "0.0.0.0", "224.0.0.1"):
        with pytest.raises(UnsafeUrl):
            refuse_unsafe_address(address, production=False)
    for address in ("10.0.0.5", "127.0.0.1", "::ffff:192.168.1.1", "fd00::1"):
        with pytest.raises(UnsafeUrl):
            refuse_unsafe_address(address, production=True)


async def test_a_production_client_will_not_connect_to_loopback(psp: tuple[Psp, str]) -> None:
    _, url = psp
    async with guarded_client(True, 5) as http:
        with pytest.raises(UnsafeUrl):
            await http.post(url + "/v1/batches", json={})


async def test_file_batches_download_as_csv_and_schema_valid_pain001(
    database: Database, client: httpx.AsyncClient
) -> None:
    await register_provider(database, FILE, mode="file")
    lines = [line(FILE, 250_005, i) for i in range(3)]
    payroll = chunks(lines)
    await approve(database, payroll)
    [batch] = await batches_of(database, payroll[0].payroll_id)

    xml = await client.get(f"/batches/{batch.id}/file", params={"format": "pain001"})
    assert xml.status_code == 200, xml.text
    assert xml.headers["content-type"].startswith("application/xml")
    schema = xmlschema.XMLSchema(str(PAIN_001_XSD))
    schema.validate(xml.text)
    decoded: Any = schema.to_dict(xml.text)
    document = decoded["CstmrCdtTrfInitn"]
    assert document["GrpHdr"]["NbOfTxs"] == "3"
    assert str(document["GrpHdr"]["CtrlSum"]) == "7500.15"
    numbers = [p.number for p in await payments_of(database, payroll[0].payroll_id)]
    assert [t["PmtId"]["EndToEndId"] for t in document["PmtInf"][0]["CdtTrfTxInf"]] == numbers

    csv = await client.get(f"/batches/{batch.id}/file", params={"format": "csv"})
    rows = csv.text.splitlines()
    assert rows[0].split(";")[:3] == ["payment_number", "amount", "currency"]
    assert rows[1].split(";")[:3] == [numbers[0], "2500.05", "KES"]

    [batch] = await batches_of(database, payroll[0].payroll_id)
    assert (batch.status, batch.downloaded_by) == ("sent", "test-admin")
    assert all(p.status == "sent" for p in await payments_of(database, payroll[0].payroll_id))
    await assert_balanced(database, payroll[0].payroll_id)


async def test_an_api_batch_has_no_file(database: Database, client: httpx.AsyncClient) -> None:
    await register_provider(database, API)
    payroll = chunks([line(API)])
    await approve(database, payroll)
    [batch] = await batches_of(database, payroll[0].payroll_id)

    response = await client.get(f"/batches/{batch.id}/file")

    assert response.status_code == 409
