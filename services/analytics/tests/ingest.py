"""Applying events without the broker, through the worker's batch handlers: a batch at once, as
the consumer applies a poll (consecutive events that go to one handler are handed to it
together), or one event at a time, each in its own transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.consumers import BatchHandler
from amana_common.db import Database
from amana_contracts.base import EventData
from analytics import consumers
from analytics.settings import AnalyticsSettings

from .factories import Event


async def apply_in_order(
    session: AsyncSession,
    routes: Mapping[type[EventData], BatchHandler[Any]],
    events: Sequence[Event],
) -> None:
    for handler, run in groupby(events, key=lambda event: routes[type(event[0])]):
        await handler(session, list(run))


async def ingest_batch(
    database: Database, settings: AnalyticsSettings, events: Sequence[Event]
) -> None:
    routes = consumers.batch_handlers(settings.pseudonym_key.encode())
    async with database.sessionmaker() as session, session.begin():
        await apply_in_order(session, routes, events)


async def ingest_one_by_one(
    database: Database, settings: AnalyticsSettings, events: Sequence[Event]
) -> None:
    routes = consumers.batch_handlers(settings.pseudonym_key.encode())
    for payload, envelope in events:
        async with database.sessionmaker() as session, session.begin():
            await routes[type(payload)](session, [(payload, envelope)])
