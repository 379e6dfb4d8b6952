"""Idempotency-Key over the real idempotency_keys table (the registry's migrations create it):
replay, reuse with another body, canonical JSON, bad keys, and no key left by a failure."""

import json
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select

from amana_common.app import create_app
from amana_common.db import Database, SessionDep
from amana_common.errors import PROBLEM_JSON, TYPE_BASE, Problem
from amana_common.idempotency import IdempotencyDep
from amana_common.settings import ServiceSettings
from amana_common.tables import idempotency_keys
from amana_common.testing.clients import service_client
from amana_common.testing.databases import rolled_back_database
from amana_common.testing.plugin import MigratedDatabase

REGISTRY_DIR = Path(__file__).resolve().parents[3] / "services" / "registry"
BODY = {"household": "H0000000422", "amount_minor": 500, "currency": "KES"}
router = APIRouter()


class Transfer(BaseModel):
    household: str
    amount_minor: int
    currency: str


@router.post("/transfers", status_code=201)
async def create_transfer(
    body: Transfer, request: Request, session: SessionDep, idempotency: IdempotencyDep
) -> Response:
    async def produce() -> JSONResponse:
        if request.app.state.provider_down:
            raise Problem(503, "provider-unavailable", "the provider did not answer")
        request.app.state.executions += 1
        transfer_id = str(uuid4())
        return JSONResponse(
            {"id": transfer_id, **body.model_dump()},
            status_code=201,
            headers={"Location": f"/transfers/{transfer_id}"},
        )

    return await idempotency.run(produce)


@pytest.fixture(scope="session")
async def database_url(migrated_database: MigratedDatabase) -> str:
    # A database of its own (amana_registry_common), so that this suite never drops the
    # registry's test database under a registry test run going on at the same time.
    return await migrated_database("registry", REGISTRY_DIR, purpose="common")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async with rolled_back_database(database_url) as database:
        yield database


@pytest.fixture
def app(database_url: str) -> FastAPI:
    settings = ServiceSettings(service_name="demo", environment="test", database_url=database_url)
    app = create_app(settings, [router], title="demo")
    app.state.executions = 0
    app.state.provider_down = False
    return app


@pytest.fixture
async def client(app: FastAPI, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with service_client(app, database) as client:
        yield client


async def stored_keys(database: Database, key: str) -> int:
    async with database.sessionmaker() as session:
        query = select(func.count()).select_from(idempotency_keys)
        return int(await session.scalar(query.where(idempotency_keys.c.key == key)) or 0)


def post(
    client: httpx.AsyncClient, key: str | bytes, body: object = BODY
) -> Awaitable[httpx.Response]:
    content = body if isinstance(body, str) else json.dumps(body)
    raw_key = key if isinstance(key, bytes) else key.encode()
    headers = [(b"Idempotency-Key", raw_key), (b"Content-Type", b"application/json")]
    return client.post("/transfers", content=content, headers=headers)


async def test_the_same_key_and_body_replay_the_stored_response(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first = await post(client, "key-replay")
    second = await post(client, "key-replay")

    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["content-type"] == "application/json"
    assert app.state.executions == 1


async def test_the_same_key_with_another_body_is_422(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await post(client, "key-reused")

    response = await post(client, "key-reused", {**BODY, "amount_minor": 900})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"] == TYPE_BASE + "idempotency-key-reused"
    assert app.state.executions == 1


async def test_the_body_is_compared_as_canonical_json(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first = await post(client, "key-canonical")

    reordered = '{ "currency" : "KES",\n  "amount_minor": 500, "household": "H0000000422" }'
    second = await post(client, "key-canonical", reordered)

    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    assert app.state.executions == 1


async def test_without_a_key_every_request_runs(app: FastAPI, client: httpx.AsyncClient) -> None:
    first = await client.post("/transfers", json=BODY)
    second = await client.post("/transfers", json=BODY)

    assert first.json()["id"] != second.json()["id"]
    assert app.state.executions == 2


BAD_KEYS = ["k" * 201, "clé".encode(), "with space", "", "tab\tkey", b"nul\x00", b"nel\x85"]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
async def test_an_invalid_key_is_422_naming_the_header(
    app: FastAPI, client: httpx.AsyncClient, key: str | bytes
) -> None:
    response = await post(client, key)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["errors"][0] | {"message": ""} == {
        "field": "Idempotency-Key",
        "in": "header",
        "message": "",
    }
    assert app.state.executions == 0


async def test_the_longest_valid_key_is_accepted(client: httpx.AsyncClient) -> None:
    response = await post(client, "k" * 200)

    assert response.status_code == 201


async def test_a_failed_request_leaves_no_key_so_the_retry_runs(
    app: FastAPI, client: httpx.AsyncClient, database: Database
) -> None:
    app.state.provider_down = True
    failed = await post(client, "key-retry")

    assert failed.status_code == 503
    assert failed.json()["type"] == TYPE_BASE + "provider-unavailable"
    assert await stored_keys(database, "key-retry") == 0

    app.state.provider_down = False
    retried = await post(client, "key-retry")

    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert app.state.executions == 1
    assert await stored_keys(database, "key-retry") == 1
