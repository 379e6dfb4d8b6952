"""/readyz runs the app's real lifespan and asks the real database, and only the database: a
broker outage delays events (the outbox keeps them) but must not take the API down."""

import asyncio
import time

import httpx
import pytest
from sqlalchemy.engine import make_url

from amana_common import app as app_module
from amana_common.app import create_app
from amana_common.errors import PROBLEM_JSON, TYPE_BASE
from amana_common.settings import ServiceSettings


def async_postgres_url(server_url: str) -> str:
    url = make_url(server_url).set(drivername="postgresql+asyncpg", database="postgres")
    return url.render_as_string(hide_password=False)


async def readyz(database_url: str, kafka_bootstrap: str) -> httpx.Response:
    settings = ServiceSettings(
        service_name="demo",
        environment="test",
        database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
    )
    app = create_app(settings, [], title="demo", uses_database=True)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        return await client.get("/readyz")


async def test_ready_against_the_real_database(
    postgres_server_url: str, kafka_bootstrap: str
) -> None:
    response = await readyz(async_postgres_url(postgres_server_url), kafka_bootstrap)

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_not_ready_when_the_database_port_is_closed(kafka_bootstrap: str) -> None:
    response = await readyz(
        "postgresql+asyncpg://amana:amana@127.0.0.1:1/postgres", kafka_bootstrap
    )

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["type"] == TYPE_BASE + "unavailable"
    assert body["status"] == 503
    assert body["title"]
    assert body["detail"] == "not ready: database"


async def test_still_ready_when_the_broker_port_is_closed(postgres_server_url: str) -> None:
    response = await readyz(async_postgres_url(postgres_server_url), "127.0.0.1:1")

    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok"}


async def test_a_database_that_accepts_but_never_answers_is_not_ready_within_the_timeout(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # holds the connection open until the client gives up
        writer.close()

    monkeypatch.setattr(app_module, "READINESS_TIMEOUT_S", 0.5)
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        started = time.monotonic()
        response = await readyz(
            f"postgresql+asyncpg://amana:amana@127.0.0.1:{port}/postgres", kafka_bootstrap
        )
        elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["detail"] == "not ready: database"
    assert elapsed < 5


async def test_a_worker_s_kafka_check_says_when_the_broker_is_unreachable(
    postgres_server_url: str, kafka_bootstrap: str
) -> None:
    from fastapi import FastAPI

    from amana_common.app import kafka_readiness

    app = FastAPI()
    answers = []
    for bootstrap in (kafka_bootstrap, "127.0.0.1:1"):
        app.state.settings = ServiceSettings(environment="test", kafka_bootstrap=bootstrap)
        answers.append(await kafka_readiness(app))

    assert answers == [{"kafka": "ok"}, {"kafka": "unavailable"}]
