"""Test clients: HTTP against a service app, Kafka readers that see only what a test produced."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from fastapi import APIRouter, FastAPI

from amana_common.app import create_app
from amana_common.db import Database
from amana_common.observability import JsonFormatter
from amana_common.settings import ServiceSettings
from amana_common.worker import Component, run_components
from amana_contracts.envelope import CloudEvent


@asynccontextmanager
async def service_client(
    app: FastAPI, database: Database | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for `app` in-process, with `database` in place of the lifespan's own."""
    if database is not None:
        app.state.database = database
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


class TopicReader:
    """Reads a topic from the offsets it had when the reader started (no consumer group), so a
    test sees exactly the records written after that point, by anyone."""

    def __init__(self, bootstrap: str, topic: str, from_beginning: bool = False) -> None:
        self.topic = topic
        self.from_beginning = from_beginning
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
        )
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        try:
            partitions = await self._assigned_partitions()
        except BaseException:
            await self.consumer.stop()
            raise
        if self.from_beginning:
            await self.consumer.seek_to_beginning(*partitions)
        else:
            await self.consumer.seek_to_end(*partitions)
            for partition in partitions:  # resolve the end offsets now, before anyone produces
                await self.consumer.position(partition)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def _assigned_partitions(self, timeout_s: float = 15) -> list[TopicPartition]:
        """Without a group, a subscription is assigned every partition once metadata arrives."""
        self.consumer.subscribe([self.topic])
        deadline = time.monotonic() + timeout_s
        while not self.consumer.assignment():
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.topic} has no partitions (does it exist?)")
            await self.consumer.getmany(timeout_ms=100)  # drives the metadata refresh
        return sorted(self.consumer.assignment())

    async def read_until(
        self, done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool], timeout_s: float = 30
    ) -> list[ConsumerRecord[bytes, bytes]]:
        deadline = time.monotonic() + timeout_s
        while not done(self.records):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.topic}: condition not met within {timeout_s}s "
                    f"({len(self.records)} records read)"
                )
            batches = await self.consumer.getmany(timeout_ms=200)
            for records in batches.values():
                self.records.extend(records)
        return self.records

    def events(self) -> list[CloudEvent]:
        return [CloudEvent.model_validate_json(r.value) for r in self.records if r.value]


async def eventually(
    check: Callable[[], Any], timeout_s: float = 30, interval_s: float = 0.2
) -> Any:
    """Awaits `check()` until it answers something truthy, or fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)


@asynccontextmanager
async def running(*components: Component) -> AsyncIterator[asyncio.Event]:
    """Runs worker components (relay, consumers) for the duration of the block; a component
    that crashed makes the block fail when it ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_components(components, stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


@contextmanager
def captured_json_log(logger_name: str) -> Iterator[io.StringIO]:
    """What `logger_name` logs while the block runs, formatted as the services format it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def app_without_database(*routers: APIRouter) -> FastAPI:
    """An app of the shared factory with no database, for testing the infrastructure itself."""
    settings = ServiceSettings(service_name="demo", environment="test")
    return create_app(settings, list(routers), title="demo", uses_database=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def serving(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Serves `app` with uvicorn on loopback (its lifespan included); answers its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), timeout_s=20, interval_s=0.05)
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=20)
