"""Applying events as the consumer does: a polled batch at once, or one event at a time, each
in its own transaction."""

from __future__ import annotations

from collections.abc import Sequence

from amana_common.db import Database
from analytics import consumers
from analytics.settings import AnalyticsSettings

from .factories import Event


async def ingest_batch(
    database: Database, settings: AnalyticsSettings, events: Sequence[Event]
) -> None:
    secret = settings.pseudonym_key.encode()
    async with database.sessionmaker() as session, session.begin():
        await consumers.apply_in_order(session, consumers.batch_handlers(secret), events)


async def ingest_one_by_one(
    database: Database, settings: AnalyticsSettings, events: Sequence[Event]
) -> None:
    routes = consumers.handlers(settings.pseudonym_key.encode())
    for payload, envelope in events:
        async with database.sessionmaker() as session, session.begin():
            await routes[type(payload)](session, payload, envelope)
