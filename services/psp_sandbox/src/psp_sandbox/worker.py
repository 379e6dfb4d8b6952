"""The sandbox worker: the results that fell due become planned webhooks (`ResultPlanner`),
and planned webhooks are signed and posted to Amana (`WebhookSender`). Both work from rows
and commit each step, so a worker killed at any point resumes where the rows say; several
workers may run side by side (rows are claimed with SKIP LOCKED, deliveries leased)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx

from amana_common.db import Database
from amana_common.worker import Component
from psp_sandbox import service
from psp_sandbox.service import AttemptResult, Claim, RetryPolicy
from psp_sandbox.settings import SandboxSettings

log = logging.getLogger("psp_sandbox.worker")

Clock = Callable[[], datetime]
USER_AGENT = "amana-psp-sandbox/0.1"


def utc_now() -> datetime:
    return datetime.now(UTC)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


class ResultPlanner:
    """Cuts due results into webhooks, a round at a time, each round one transaction."""

    def __init__(self, database: Database, settings: SandboxSettings, clock: Clock = utc_now):
        self.database = database
        self.settings = settings
        self.clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                planned = await self.plan_once()
            except Exception:
                log.exception("planning results failed; trying again")
                planned = 0
            if planned < self.settings.planner_batch_size:
                await pause(stop, self.settings.poll_interval_s)

    async def plan_once(self) -> int:
        async with self.database.sessionmaker() as session, session.begin():
            return await service.plan_due_results(
                session, self.clock(), self.settings.planner_batch_size
            )


class WebhookSender:
    """Posts planned webhooks, up to `delivery_concurrency` at once; each attempt is leased
    before it is sent and recorded after, in transactions of their own."""

    def __init__(
        self,
        database: Database,
        settings: SandboxSettings,
        clock: Clock = utc_now,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.database = database
        self.settings = settings
        self.clock = clock
        self.transport = transport
        self.policy = RetryPolicy(
            settings.retry_base_s, settings.retry_cap_s, settings.max_attempts
        )

    async def run(self, stop: asyncio.Event) -> None:
        async with self._client() as client:
            sending: set[asyncio.Task[None]] = set()
            try:
                while not stop.is_set():
                    claimed = await self._claim_safely(
                        self.settings.delivery_concurrency - len(sending)
                    )
                    sending |= {asyncio.create_task(self.deliver(client, c)) for c in claimed}
                    if claimed and len(sending) < self.settings.delivery_concurrency:
                        continue
                    if sending:
                        done, sending = await asyncio.wait(
                            sending,
                            timeout=self.settings.poll_interval_s,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                        _log_failures(done)
                    else:
                        await pause(stop, self.settings.poll_interval_s)
            finally:
                if sending:
                    _log_failures((await asyncio.wait(sending))[0])

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.settings.delivery_timeout_s,
            follow_redirects=False,
            transport=self.transport,
            headers={"user-agent": USER_AGENT},
        )

    async def _claim_safely(self, free: int) -> list[Claim]:
        if free <= 0:
            return []
        try:
            return await self.claim(free)
        except Exception:
            log.exception("claiming deliveries failed; trying again")
            return []

    async def claim(self, limit: int) -> list[Claim]:
        async with self.database.sessionmaker() as session, session.begin():
            return await service.claim_deliveries(
                session, self.clock(), limit, self.settings.delivery_lease_s
            )

    async def deliver(self, client: httpx.AsyncClient, claim: Claim) -> None:
        result = await self.post(client, claim)
        async with self.database.sessionmaker() as session, session.begin():
            await service.record_attempt(session, result, self.clock(), self.policy)

    async def post(self, client: httpx.AsyncClient, claim: Claim) -> AttemptResult:
        started_at = self.clock()
        started = time.monotonic()
        status_code: int | None = None
        answer: str | None = None
        error: str | None = None
        try:
            async with client.stream(
                "POST",
                claim.url,
                content=claim.request.body,
                headers=claim.request.headers | {"content-type": "application/json"},
            ) as response:
                status_code = response.status_code
                answer = await _read_bounded(response, self.settings.answer_max_bytes)
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:500]
        return AttemptResult(
            claim,
            started_at,
            int((time.monotonic() - started) * 1000),
            status_code,
            answer,
            error,
        )


async def _read_bounded(response: httpx.Response, limit: int) -> str:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body.extend(chunk[: limit - len(body)])
        if len(body) >= limit:
            break
    return body.decode(errors="replace")


def _log_failures(done: set[asyncio.Task[None]]) -> None:
    """A delivery whose attempt could not be recorded keeps its lease until it expires, and is
    then sent again: logged, never lost."""
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("recording a delivery attempt failed: %r", task.exception())


def worker_components(settings: SandboxSettings, database: Database) -> Sequence[Component]:
    """The sandbox worker plans and sends webhooks; it publishes and consumes no events."""
    return [ResultPlanner(database, settings), WebhookSender(database, settings)]
