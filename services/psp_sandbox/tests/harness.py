"""A sandbox on a committing database with its worker running, posting to a receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import func, select
from uuid6 import uuid7

from amana_common.db import Database
from amana_common.testing.clients import eventually, running
from psp_sandbox.models import Delivery, Payment
from psp_sandbox.worker import ResultPlanner, WebhookSender

from .receiver import Expected, Receiver, receiving
from .support import SECRET, all_pages, batch_body, configure, fast_settings, post_batch


@dataclass
class Sandbox:
    client: httpx.AsyncClient
    database: Database
    receiver: Receiver
    receiver_url: str

    async def provider(self, **overrides: Any) -> UUID:
        provider_id = uuid7()
        url = f"{self.receiver_url}/webhooks/providers/{provider_id}"
        return await configure(self.client, provider_id, webhook_url=url, **overrides)

    async def send_batch(self, provider_id: UUID, count: int, **options: Any) -> dict[str, Any]:
        """Posts a batch and tells the receiver (as Amana would know) what it holds."""
        body = batch_body(provider_id, count, **options)
        response = await post_batch(self.client, body)
        assert response.status_code == 202, response.text
        for payment in body["payments"]:
            self.receiver.payments[payment["payment_number"]] = Expected(
                payment["amount_minor"], datetime.fromisoformat(payment["pay_by"])
            )
        return body

    async def settled(
        self, deliveries: int | None = None, timeout_s: float = 30
    ) -> list[dict[str, Any]]:
        """Waits until every due result is planned and every delivery finished (at least
        `deliveries` of them); answers the delivery log in planning order."""

        async def finished() -> list[dict[str, Any]] | None:
            async with self.database.sessionmaker() as session:
                unplanned = await session.scalar(
                    select(func.count()).select_from(Payment).where(Payment.delivery_id.is_(None))
                )
                pending = await session.scalar(
                    select(func.count()).select_from(Delivery).where(Delivery.status == "pending")
                )
                total = await session.scalar(select(func.count()).select_from(Delivery))
            if unplanned or pending or (deliveries is not None and (total or 0) < deliveries):
                return None
            return await all_pages(self.client, "/sandbox/deliveries")

        result: list[dict[str, Any]] = await eventually(finished, timeout_s=timeout_s)
        return result


@asynccontextmanager
async def sandbox_running(
    client: httpx.AsyncClient, database: Database, url: str, **settings: Any
) -> AsyncIterator[Sandbox]:
    receiver = Receiver(SECRET)
    worker_settings = fast_settings(url, **settings)
    async with receiving(receiver) as base_url:
        sandbox = Sandbox(client, database, receiver, base_url)
        async with running(
            ResultPlanner(database, worker_settings), WebhookSender(database, worker_settings)
        ):
            yield sandbox
