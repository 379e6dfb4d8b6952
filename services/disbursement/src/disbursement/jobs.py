"""Scheduled work of the worker: payments still open after their payment window expire
(PaymentFailed, outcome `expired`), so nothing stays pending forever; and payrolls whose last
payments closed concurrently are reconciled, so no PayrollReconciled is ever missed."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from amana_common.db import Database
from amana_common.tracing import traced_job
from disbursement import service
from disbursement.settings import DisbursementSettings

log = logging.getLogger("amana.disbursement.expiry")


class ExpiryJob:
    def __init__(self, settings: DisbursementSettings, database: Database) -> None:
        self.settings = settings
        self.database = database

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                with traced_job("disbursement.expiry"):
                    await self.expire_all_due()
                    await self.reconcile_missed()
            except Exception as error:  # the database is down: the next round retries
                log.warning("expiry failed, retrying: %r", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.expiry_interval_s)

    async def reconcile_missed(self) -> int:
        async with self.database.sessionmaker() as session, session.begin():
            return await service.reconcile_missed(
                session, service.now_utc(), self.settings.expiry_batch_size
            )

    async def expire_all_due(self) -> int:
        """Expires every due payment, in transactions of `expiry_batch_size`."""
        total = 0
        while True:
            async with self.database.sessionmaker() as session, session.begin():
                expired = await service.expire_due_payments(
                    session, service.now_utc(), self.settings.expiry_batch_size
                )
            total += expired
            if expired < self.settings.expiry_batch_size:
                return total
