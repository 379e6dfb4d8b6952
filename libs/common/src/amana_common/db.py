"""Database plumbing: naming convention, engine + sessionmaker owned by the app lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from amana_common.settings import ServiceSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


@dataclass
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_database(
    url: str,
    pool_size: int = 10,
    session_settings: Mapping[str, str] | None = None,
    pool_timeout_s: float = 30.0,
) -> Database:
    """An engine whose errors never carry SQL parameters (they may hold personal data), and
    whose connections start with `session_settings` (PostgreSQL run-time parameters).
    Created through its module, where tracing's instrumentation wraps it when on."""
    engine = sqlalchemy_asyncio.create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={"server_settings": dict(session_settings or {})},
    )
    return Database(engine, async_sessionmaker(engine, expire_on_commit=False))


def service_database(settings: ServiceSettings, pool_size: int | None = None) -> Database:
    """The service's database, with its lock, statement and idle-in-transaction timeouts."""
    return create_database(
        settings.database_url,
        pool_size or settings.db_pool_size,
        session_timeouts(settings),
        settings.db_pool_timeout_s,
    )


def session_timeouts(settings: ServiceSettings) -> dict[str, str]:
    """In milliseconds, as PostgreSQL reads a bare number; 0 turns a timeout off."""
    return {
        "lock_timeout": str(settings.db_lock_timeout_ms),
        "statement_timeout": str(settings.db_statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(settings.db_idle_in_transaction_timeout_ms),
    }


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error (SQLAlchemy-wrapped or raw asyncpg), if it has one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for candidate in (current, getattr(current, "orig", None)):
            code = getattr(candidate, "sqlstate", None)
            if isinstance(code, str) and code:
                return code
        current = current.__cause__ or current.__context__
    return None


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, committed at the edge when the route returns without error."""
    database: Database = request.app.state.database
    async with database.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]
