"""Database errors from a real PostgreSQL: classified by cause for consumers, described without
the values they refused, bounded by session timeouts, and a lock timeout is a 409 'try again'."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from amana_common.app import create_app
from amana_common.db import Database, SessionDep, create_database, service_database
from amana_common.errors import PROBLEM_JSON, TYPE_BASE
from amana_common.inbox import Failure, PoisonMessage, classify, describe
from amana_common.settings import ServiceSettings
from amana_common.testing.clients import service_client

PERSONAL = "Amina Otieno 1984-03-02"


def postgres_url(server_url: str) -> str:
    url = make_url(server_url).set(drivername="postgresql+asyncpg", database="postgres")
    return url.render_as_string(hide_password=False)


@pytest.fixture
async def database(postgres_server_url: str) -> AsyncIterator[Database]:
    database = create_database(postgres_url(postgres_server_url), 2, {"application_name": "dbe"})
    yield database
    await database.dispose()


@pytest.fixture
async def table(database: Database) -> AsyncIterator[str]:
    name = f"probe_{uuid4().hex[:10]}"
    async with database.sessionmaker() as session, session.begin():
        await session.execute(text(f"CREATE TABLE {name} (id int PRIMARY KEY, note text UNIQUE)"))
        await session.execute(text(f"INSERT INTO {name} VALUES (1, :note)"), {"note": PERSONAL})
    yield name
    async with database.sessionmaker() as session, session.begin():
        await session.execute(text(f"DROP TABLE {name}"))


@asynccontextmanager
async def serving(
    router: APIRouter, postgres_server_url: str, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """`router` in an app of its own, whose lifespan opens the database with `settings`."""
    app = create_app(
        ServiceSettings(
            service_name="demo",
            environment="test",
            database_url=postgres_url(postgres_server_url),
            **settings,
        ),
        [router],
        title="demo",
    )
    async with app.router.lifespan_context(app), service_client(app) as client:
        yield client


async def raised(database: Database, sql: str, **params: object) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught:
        async with database.sessionmaker() as session:
            await session.execute(text(sql), params)
    return caught.value


def raise_sqlstate(code: str) -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$"


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        ("57P03", Failure.temporary),  # cannot connect now: the server is starting up
        ("57P01", Failure.temporary),  # admin shutdown
        ("57014", Failure.temporary),  # statement timeout
        ("08006", Failure.temporary),  # connection failure
        ("40001", Failure.temporary),  # serialization failure
        ("40P01", Failure.temporary),  # deadlock
        ("53300", Failure.temporary),  # too many connections
        ("25006", Failure.temporary),  # read-only transaction (a standby after failover)
        ("55P03", Failure.temporary),  # lock timeout
        ("23505", Failure.blocking),  # unique violation: a bug or a state to look at
        ("42P01", Failure.blocking),  # undefined table
        ("22P02", Failure.blocking),  # invalid text representation
    ],
)
async def test_database_errors_are_classified_by_their_sqlstate(
    database: Database, code: str, failure: Failure
) -> None:
    error = await raised(database, raise_sqlstate(code))

    assert classify(error) is failure
    assert describe(error) == f"{type(error).__name__} (SQLSTATE {code})"


async def test_a_killed_connection_is_temporary(
    database: Database, postgres_server_url: str
) -> None:
    killer = create_database(postgres_url(postgres_server_url), 1)
    try:
        with pytest.raises(DBAPIError) as caught:
            async with database.sessionmaker() as session:
                await session.execute(text("SELECT 1"))
                async with killer.sessionmaker() as other:
                    await other.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = 'dbe'"
                        )
                    )
                await session.execute(text("SELECT 2"))
    finally:
        await killer.dispose()

    assert classify(caught.value) is Failure.temporary


async def test_a_pool_timeout_and_network_errors_are_temporary_but_not_a_missing_file() -> None:
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    assert classify(PoolTimeout("QueuePool limit reached")) is Failure.temporary
    assert classify(ConnectionRefusedError("connect")) is Failure.temporary
    assert classify(OSError(111, "Connect call failed")) is Failure.temporary  # asyncio's
    assert classify(TimeoutError()) is Failure.temporary
    assert classify(FileNotFoundError("/etc/amana/rules.json")) is Failure.blocking


async def test_a_database_that_does_not_answer_is_temporary() -> None:
    closed = create_database("postgresql+asyncpg://amana:amana@127.0.0.1:1/postgres", 1)
    try:
        with pytest.raises(OSError) as caught:
            async with closed.sessionmaker() as session:
                await session.execute(text("SELECT 1"))
    finally:
        await closed.dispose()

    assert classify(caught.value) is Failure.temporary


def test_a_broken_contract_is_a_contract_failure_and_other_errors_block() -> None:
    class Payment(BaseModel):
        amount_minor: int

    with pytest.raises(ValidationError) as invalid:
        Payment.model_validate({"amount_minor": "lots"})

    assert classify(invalid.value) is Failure.contract
    assert classify(PoisonMessage("unknown household")) is Failure.contract
    assert classify(KeyError("x")) is Failure.blocking
    assert classify(ValueError("x")) is Failure.blocking


async def test_errors_and_their_descriptions_never_carry_the_values_sent(
    database: Database, table: str
) -> None:
    error = await raised(database, f"INSERT INTO {table} VALUES (2, :note)", note=PERSONAL)

    assert error.hide_parameters
    assert PERSONAL not in str(error)
    assert describe(error) == "IntegrityError (SQLSTATE 23505)"


async def test_a_handler_bug_is_described_by_where_it_was_raised_not_its_message() -> None:
    def handler() -> None:
        raise KeyError(PERSONAL)

    with pytest.raises(KeyError) as caught:
        handler()

    assert describe(caught.value) == (
        "KeyError at test_database_errors.py:"
        f"{caught.value.__traceback__.tb_next.tb_lineno} in handler"  # type: ignore[union-attr]
    )


async def test_service_sessions_carry_the_lock_statement_and_idle_timeouts(
    postgres_server_url: str,
) -> None:
    settings = ServiceSettings(
        environment="test",
        database_url=postgres_url(postgres_server_url),
        db_lock_timeout_ms=1500,
        db_statement_timeout_ms=20_000,
        db_idle_in_transaction_timeout_ms=45_000,
    )
    database = service_database(settings)
    try:
        async with database.sessionmaker() as session:
            shown = [
                await session.scalar(text(f"SHOW {name}"))
                for name in (
                    "lock_timeout",
                    "statement_timeout",
                    "idle_in_transaction_session_timeout",
                )
            ]
    finally:
        await database.dispose()

    assert shown == ["1500ms", "20s", "45s"]
    defaults = ServiceSettings(environment="test")
    assert (
        defaults.db_lock_timeout_ms,
        defaults.db_statement_timeout_ms,
        defaults.db_idle_in_transaction_timeout_ms,
    ) == (2_000, 30_000, 60_000)


async def test_a_lock_waited_on_too_long_is_a_409_try_again_with_retry_after(
    database: Database, table: str, postgres_server_url: str
) -> None:
    router = APIRouter()

    @router.post("/notes/{note_id}/touch")
    async def touch(note_id: int, session: SessionDep) -> dict[str, int]:
        await session.execute(
            text(f"SELECT * FROM {table} WHERE id = :id FOR UPDATE"), {"id": note_id}
        )
        return {"id": note_id}

    async with (
        serving(router, postgres_server_url, db_lock_timeout_ms=200) as client,
        database.sessionmaker() as holder,
        holder.begin(),
    ):
        await holder.execute(text(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE"))
        started = asyncio.get_running_loop().time()
        response = await client.post("/notes/1/touch")
        waited = asyncio.get_running_loop().time() - started

    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"] == TYPE_BASE + "try-again"
    assert waited < 5


async def test_a_deadlock_is_a_409_try_again_and_the_other_request_succeeds(
    database: Database, table: str, postgres_server_url: str
) -> None:
    """Two requests lock the same two rows in opposite orders: PostgreSQL aborts one
    (40P01, deadlock detected); that one is a 409 to try again, never a 500."""
    async with database.sessionmaker() as session, session.begin():
        await session.execute(text(f"INSERT INTO {table} VALUES (2, 'two')"))
    router = APIRouter()

    @router.post("/notes/{first}/{second}/touch")
    async def touch(first: int, second: int, session: SessionDep) -> dict[str, int]:
        lock = text(f"SELECT * FROM {table} WHERE id = :id FOR UPDATE")
        await session.execute(lock, {"id": first})
        await asyncio.sleep(0.5)  # both hold their first row before asking for the second
        await session.execute(lock, {"id": second})
        return {"id": first}

    async with serving(router, postgres_server_url, db_lock_timeout_ms=10_000) as client:
        answers = await asyncio.gather(
            client.post("/notes/1/2/touch"), client.post("/notes/2/1/touch")
        )

    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.json()["type"] == TYPE_BASE + "try-again"
    assert refused.headers["retry-after"] == "1"


async def test_a_request_finding_no_free_connection_is_a_503_to_retry_never_a_500(
    postgres_server_url: str,
) -> None:
    """Overload: every pooled connection is busy past the pool timeout. The request is told
    the service is busy and when to retry (503, Retry-After), never a 500."""
    router = APIRouter()

    @router.get("/slow")
    async def slow(session: SessionDep) -> dict[str, int]:
        await session.execute(text("SELECT pg_sleep(1)"))
        return {"slept": 1}

    # One connection and one overflow, waited for 0.2 s.
    pool = {"db_pool_size": 1, "db_pool_timeout_s": 0.2}
    async with serving(router, postgres_server_url, **pool) as client:
        answers = await asyncio.gather(*(client.get("/slow") for _ in range(3)))

    assert sorted(a.status_code for a in answers) == [200, 200, 503], [a.text for a in answers]
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["content-type"] == PROBLEM_JSON
    assert busy.json()["type"] == TYPE_BASE + "busy"
    assert busy.headers["retry-after"] == "2"
