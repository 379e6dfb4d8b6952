"""Logs are one JSON object per line, carrying the request id and trace id."""

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import APIRouter

from amana_common.observability import request_id_var, traceparent_var
from amana_common.testing.clients import (
    app_without_database,
    captured_json_log,
    service_client,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
router = APIRouter()


@router.post("/dispatch")
async def dispatch() -> dict[str, str]:
    logging.getLogger("demo.dispatch").info("batch dispatched\nto provider", extra={"status": 1})
    return {"status": "sent"}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    with captured_json_log("demo") as stream:
        yield stream


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with service_client(app_without_database(router)) as client:
        yield client


def entries(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_request_and_trace_ids(captured: io.StringIO) -> None:
    id_token = request_id_var.set("req-7")
    trace_token = traceparent_var.set(f"00-{TRACE}-00f067aa0ba902b7-01")
    try:
        log = logging.getLogger("demo.payments")
        log.info("settled %d payments", 3, extra={"route": "/payments", "duration_ms": 4.5})
        try:
            raise ValueError("bad\nreport")
        except ValueError:
            log.exception("statement rejected")
    finally:
        request_id_var.reset(id_token)
        traceparent_var.reset(trace_token)

    first, second = entries(captured)
    assert first["message"] == "settled 3 payments"
    assert first["level"] == "INFO"
    assert first["logger"] == "demo.payments"
    assert first["request_id"] == "req-7"
    assert first["trace_id"] == TRACE
    assert first["route"] == "/payments"
    assert first["duration_ms"] == 4.5
    assert str(first["time"]).endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "ValueError: bad\nreport" in str(second["exception"])
    assert second["request_id"] == "req-7"


def test_outside_a_request_the_ids_are_null(captured: io.StringIO) -> None:
    logging.getLogger("demo").warning("worker started")

    [entry] = entries(captured)
    assert entry["request_id"] is None
    assert entry["trace_id"] is None


async def test_a_route_logs_with_the_ids_of_its_request(
    client: httpx.AsyncClient, captured: io.StringIO
) -> None:
    response = await client.post("/dispatch", headers={"X-Request-Id": "req-dispatch"})

    [entry] = entries(captured)
    assert entry["message"] == "batch dispatched\nto provider"
    assert entry["request_id"] == "req-dispatch"
    assert entry["trace_id"] == response.headers["traceparent"].split("-")[1]
    assert entry["status"] == 1
