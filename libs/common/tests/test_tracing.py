"""Tracing: nothing at all without an endpoint; with one, a server span per request continuing
the caller's trace, statements traced inside a span only and without their parameters, jobs
traced, nothing personal exported, and spans really sent over OTLP/HTTP."""

import asyncio
import gzip
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy.ext.asyncio
from fastapi import APIRouter
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from amana_common.app import create_app
from amana_common.db import create_database
from amana_common.guarded_http import guarded_client
from amana_common.settings import ServiceSettings, TracingSettings
from amana_common.testing.clients import captured_json_log, free_port, service_client, serving
from amana_common.testing.databases import async_url
from amana_common.testing.tracing import Trace, recorded_spans, statement
from amana_common.tracing import (
    active_tracing,
    configured_sampler,
    consume_span,
    publish_span,
    setup_tracing,
    traced_job,
    uninstall_tracing,
)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
PERSONAL = "Amina-Otieno"
OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)

router = APIRouter()


@router.get("/things/{thing_id}")
async def thing(thing_id: str) -> dict[str, str]:
    logging.getLogger("demo.things").info("thing read")
    return {"id": thing_id}


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class Record:
    topic, partition, offset, headers, value = "registry.events", 0, 1, (), b"{}"


def demo_settings(**tracing: Any) -> ServiceSettings:
    return ServiceSettings(
        service_name="demo", environment="test", tracing=TracingSettings(**tracing)
    )


def demo_app(settings: ServiceSettings | None = None) -> Any:
    settings = settings or demo_settings()
    return create_app(settings, [router], title="demo", uses_database=False)


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    with captured_json_log("demo") as stream:
        yield stream


async def test_without_an_endpoint_nothing_is_set_up() -> None:
    settings = demo_settings()
    app = demo_app(settings)
    database = create_database("postgresql+asyncpg://amana:amana@127.0.0.1:1/none")
    client = guarded_client(production=False, timeout_s=1)
    try:
        assert not settings.tracing.enabled
        assert setup_tracing(settings) is None and active_tracing() is None
        assert not isinstance(trace.get_tracer_provider(), TracerProvider)
        assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
        assert not hasattr(sqlalchemy.ext.asyncio.create_async_engine, "__wrapped__")
        assert not database.engine.sync_engine.dispatch.before_cursor_execute
        assert not getattr(client, "_is_instrumented_by_opentelemetry", False)
        headers: list[tuple[str, bytes]] = []
        with publish_span("registry.events", "k", b'{"traceparent":"x"}', headers) as span:
            assert not span.is_recording()
        with traced_job("test.job") as job:
            assert not job.is_recording()
        with consume_span("consumer", [Record()]) as consumed:
            assert not consumed.is_recording()
        assert headers == []
        async with service_client(app) as http:
            response = await http.get("/things/1", headers=CALLER)
        _, trace_id, span_id, _ = response.headers["traceparent"].split("-")
        assert trace_id == CALLER_TRACE and span_id != CALLER_SPAN
    finally:
        await client.aclose()
        await database.dispose()


def test_the_standard_variables_configure_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "registry-eu")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")

    tracing = ServiceSettings(service_name="demo", environment="test").tracing

    assert tracing.enabled
    assert tracing.exporter_otlp_endpoint == "http://collector:4317"
    assert (tracing.exporter_otlp_protocol, tracing.service_name) == ("grpc", "registry-eu")
    description = configured_sampler(tracing).get_description()
    assert description.startswith("ParentBased{root:TraceIdRatioBased{0.25}")


def test_empty_variables_mean_the_defaults_and_unknown_values_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.setenv(name, "")
    tracing = TracingSettings()
    assert not tracing.enabled
    assert tracing.exporter_otlp_protocol == "http/protobuf"
    assert tracing.traces_sampler == "parentbased_always_on"

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "jaeger_remote")
    with pytest.raises(ValidationError, match="traces_sampler"):
        TracingSettings()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "2")
    with pytest.raises(ValidationError, match="traces_sampler_arg"):
        TracingSettings()


async def test_a_request_has_one_server_span_continuing_the_callers_trace(
    log: io.StringIO,
) -> None:
    with recorded_spans() as exporter:
        async with service_client(demo_app()) as http:
            response = await http.get(f"/things/7?name={PERSONAL}", headers=CALLER)
            probe = await http.get("/healthz", headers=CALLER)
    assert response.status_code == probe.status_code == 200

    spans = Trace.of(exporter, CALLER_TRACE)
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /things/{thing_id}"]
    server = spans.named("GET /things/{thing_id}", SpanKind.SERVER)
    assert server.parent is not None and server.parent.span_id == int(CALLER_SPAN, 16)
    assert server.parent.is_remote
    assert server.context is not None
    server_id = f"{server.context.span_id:016x}"
    assert response.headers["traceparent"] == f"00-{CALLER_TRACE}-{server_id}-01"
    [entry] = [json.loads(line) for line in log.getvalue().splitlines()]
    assert (entry["trace_id"], entry["span_id"]) == (CALLER_TRACE, server_id)
    assert server.attributes is not None and server.attributes["http.status_code"] == 200
    assert PERSONAL not in json.dumps(dict(server.attributes)), "query strings are not exported"


@pytest.fixture
async def postgres(postgres_server_url: str) -> AsyncIterator[str]:
    yield async_url(postgres_server_url, "postgres")


async def test_statements_are_traced_inside_a_span_only_and_without_their_parameters(
    postgres: str,
) -> None:
    with recorded_spans() as exporter:
        database = create_database(postgres)
        try:
            async with database.engine.connect() as connection:
                await connection.execute(text("SELECT :name"), {"name": PERSONAL})
            assert exporter.get_finished_spans() == (), "a poll outside any span makes none"
            with traced_job("test.lookup", round=1) as job:
                async with database.engine.connect() as connection:
                    await connection.execute(text("SELECT :name"), {"name": PERSONAL})
        finally:
            await database.dispose()

    assert job.get_span_context().is_valid
    spans = Trace.of(exporter, job.get_span_context().trace_id)
    root = spans.named("test.lookup")
    assert root.parent is None and root.attributes == {"amana.job": "test.lookup", "amana.round": 1}
    [select] = spans.statements(root)
    assert statement(select) == "SELECT $1"
    assert PERSONAL not in str(select.attributes)


async def test_a_failing_job_is_marked_by_the_errors_class_and_nothing_personal_is_kept(
    postgres: str,
) -> None:
    with recorded_spans() as exporter:
        database = create_database(postgres)
        try:
            with pytest.raises(DBAPIError), traced_job("test.failing") as job:
                async with database.engine.connect() as connection:
                    # PostgreSQL's message quotes the value: invalid input syntax for ...
                    cast = text("SELECT CAST(CAST(:name AS text) AS integer)")
                    await connection.execute(cast, {"name": PERSONAL})
        finally:
            await database.dispose()

    spans = Trace.of(exporter, job.get_span_context().trace_id)
    root = spans.named("test.failing")
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "DBAPIError (SQLSTATE 22P02)"
    [failed] = spans.statements(root)
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description is None, "the database's message quotes the value"
    for span in spans.spans:
        assert PERSONAL not in repr(
            (span.attributes, span.status, [e.attributes for e in span.events])
        )


async def test_a_jobs_outbound_call_is_continued_by_the_server_it_calls() -> None:
    with recorded_spans() as exporter:
        async with serving(demo_app()) as url, guarded_client(False, 5) as client:
            with traced_job("test.dispatch", batch_id="b-1") as job:
                response = await client.get(f"{url}/things/3?name={PERSONAL}")
    assert response.status_code == 200

    spans = Trace.of(exporter, job.get_span_context().trace_id)
    root = spans.named("test.dispatch")
    [call] = spans.children(root, SpanKind.CLIENT)
    [served] = spans.children(call, SpanKind.SERVER)
    assert served.name == "GET /things/{thing_id}"
    assert root.attributes is not None and root.attributes["amana.batch_id"] == "b-1"
    assert PERSONAL not in repr([dict(s.attributes or {}) for s in spans.spans])


def test_exception_events_keep_only_the_exceptions_type() -> None:
    with recorded_spans() as exporter:
        tracing = active_tracing()
        assert tracing is not None
        other = tracing.provider.get_tracer("some.instrumentation")
        with other.start_as_current_span("call", record_exception=True) as span:
            span.record_exception(ValueError(f"no household for {PERSONAL}"))
            span.set_status(StatusCode.ERROR, f"no household for {PERSONAL}")

    [call] = exporter.get_finished_spans()
    [event] = call.events
    assert event.name == "exception"
    assert dict(event.attributes or {}) == {"exception.type": "ValueError"}
    assert call.status.status_code is StatusCode.ERROR and call.status.description is None


class OtlpReceiver:
    """A collector in a thread: answers OTLP/HTTP export requests and keeps them, decoded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, ExportTraceServiceRequest]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                received.append((self.path, self.headers["Content-Type"], request))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def spans(self) -> list[tuple[dict[str, str], SpanProto]]:
        """Every span received, with its resource's attributes."""
        found = []
        for _, _, request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found += [(resource, span) for span in scope_spans.spans]
        return found


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


async def test_spans_are_exported_over_otlp_http(receiver: OtlpReceiver) -> None:
    settings = demo_settings(exporter_otlp_endpoint=receiver.url)
    try:
        app = demo_app(settings)
        assert active_tracing() is not None
        async with service_client(app) as http:
            response = await http.get(f"/things/9?name={PERSONAL}", headers=CALLER)
        assert response.status_code == 200
    finally:
        await asyncio.to_thread(uninstall_tracing)  # exports what the batch still holds

    assert {(path, kind) for path, kind, _ in receiver.requests} == {
        ("/v1/traces", "application/x-protobuf")
    }
    [(resource, span)] = receiver.spans()
    assert resource["service.name"] == "amana-demo"
    assert resource["deployment.environment.name"] == "test"
    assert span.name == "GET /things/{thing_id}"
    assert span.kind == SpanProto.SPAN_KIND_SERVER
    assert span.trace_id.hex() == CALLER_TRACE
    assert span.parent_span_id.hex() == CALLER_SPAN
    assert f"-{span.span_id.hex()}-" in response.headers["traceparent"]
    assert PERSONAL not in str(span.attributes)
