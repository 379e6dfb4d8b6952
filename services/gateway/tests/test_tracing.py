"""With tracing on, a request through the gateway to a service is one trace: the gateway's
server span continues the caller's, its client span to the upstream is the parent of the
service's server span, whose statements and outbox event are under it."""

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from amana_common.db import create_database
from amana_common.tables import outbox
from amana_common.testing.clients import eventually
from amana_common.testing.tracing import Trace, is_child, recorded_spans, statement
from amana_common.tracing import traceparent_of

from .conftest import gateway_client, gateway_settings
from .test_gateway import HOUSEHOLD, token

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exporter:
        yield exporter


@pytest.fixture
async def traced_gateway(
    exporter: InMemorySpanExporter, upstreams: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in-process before the registry on loopback, both made with tracing on
    (`exporter` is set up first)."""
    async for client in gateway_client(gateway_settings(upstreams)):
        yield client


async def test_a_request_through_the_gateway_to_a_service_is_one_trace(
    traced_gateway: httpx.AsyncClient, exporter: InMemorySpanExporter, registry_url: str
) -> None:
    headers = await token(traced_gateway, "registrar-1", "s3cret!")
    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    before = len(exporter.get_finished_spans())

    created = await traced_gateway.post(
        "/registry/households", json=HOUSEHOLD, headers=headers | caller
    )
    assert created.status_code == 201, created.text

    def finished() -> Trace:  # the registry's span ends once its response is sent, maybe later
        spans = Trace.of(exporter, CALLER_TRACE)
        return spans if "POST /households" in spans.names() else Trace(0, ())

    spans = await eventually(finished, timeout_s=10, interval_s=0.05)
    entry = spans.named("POST /registry/{path:path}", SpanKind.SERVER)
    upstream_call = spans.named("POST", SpanKind.CLIENT)
    service = spans.named("POST /households", SpanKind.SERVER)
    assert entry.parent is not None and f"{entry.parent.span_id:016x}" == CALLER_SPAN
    assert is_child(upstream_call, entry)
    assert is_child(service, upstream_call)
    assert created.headers["traceparent"] == traceparent_of(entry.get_span_context())

    statements = [statement(span) for span in spans.statements(service)]
    assert any(s.startswith("INSERT INTO households") for s in statements), statements
    assert any(s.startswith("INSERT INTO outbox") for s in statements), statements
    assert not any("Achieng" in s for s in statements), "parameters never reach a span"
    during = exporter.get_finished_spans()[before:]
    assert {s.context.trace_id for s in during if s.context} == {int(CALLER_TRACE, 16)}
    assert len([s for s in during if s.kind is SpanKind.SERVER]) == 2

    database = create_database(registry_url)
    try:
        async with database.sessionmaker() as session:
            payload = await session.scalar(
                select(outbox.c.payload).where(outbox.c.key == created.json()["id"])
            )
    finally:
        await database.dispose()
    assert payload is not None
    event = json.loads(payload)
    assert event["traceparent"] == traceparent_of(service.get_span_context()), (
        "the event continues the service's span, for the relay and its consumers"
    )
