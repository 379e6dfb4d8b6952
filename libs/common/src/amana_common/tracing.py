"""OpenTelemetry traces, exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

Without an endpoint nothing is set up: no provider, no instrumentation, no middleware, and the
helpers below answer a shared no-op after one check. With one, the process has one provider
(`setup_tracing`, called by the app factory and the worker's entry point) and:

- every app a server span per request, continuing the caller's `traceparent` (FastAPI's
  instrumentation); the probes and /metrics have none;
- the database a client span per statement, with its placeholders and never its parameters
  (SQLAlchemy's instrumentation), but only inside another span: the outbox relay's and the
  consumers' polling make no traces of their own;
- the outbox relay a producer span per event, the child of the span that wrote the event (its
  CloudEvent's `traceparent`), whose own traceparent travels in the Kafka record's headers;
- a consumer a consumer span per event it applies, the child of the record's traceparent
  header (else of its CloudEvent's), or one per run of events applied together, linked to each;
- a worker job a span per run (`traced_job`);
- the outbound HTTP clients (the gateway's, `guarded_client`) a client span per call, whose
  traceparent the callee continues.

What leaves the process is scrubbed first (`PrivacyFilter`): query strings are cut from URLs,
and neither exception messages nor the instrumentations' error descriptions are kept (a
database error's text can quote the row it refused).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    import httpx
    from aiokafka import ConsumerRecord
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler

    from amana_common.settings import ServiceSettings, TracingSettings

TRACER_NAME = "amana"
TRACEPARENT_HEADER = "traceparent"
UNTRACED_PATHS = ("/healthz", "/readyz", "/metrics")
URL_ATTRIBUTES = frozenset({"http.url", "url.full", "http.target"})
QUERY_ATTRIBUTES = frozenset({"url.query"})
# The envelope's own fields precede `data` in every CloudEvent Amana writes, within its first
# bytes: read there, a payload's fields never shadow them.
ENVELOPE_HEAD_BYTES = 1024
_ENVELOPE_FIELD = re.compile(rb'"(id|type|traceparent)":"([^"]{1,200})"')
_W3C = TraceContextTextMapPropagator()
_NO_SPAN: AbstractContextManager[trace.Span] = nullcontext(trace.INVALID_SPAN)


@dataclass(frozen=True)
class Tracing:
    provider: TracerProvider
    tracer: trace.Tracer


_active: Tracing | None = None


def active_tracing() -> Tracing | None:
    """The process's tracing, or None when it is off."""
    return _active


def setup_tracing(settings: ServiceSettings, process_wide: bool = False) -> Tracing | None:
    """Sets the process's tracing up from `settings.tracing`, once, when it names an endpoint
    (a tracing already installed is kept); None, and nothing set up, otherwise.
    `process_wide` also makes it OpenTelemetry's global provider (the entry point does)."""
    if _active is not None or not settings.tracing.enabled:
        return _active
    tracing = install_tracing(
        otlp_exporter(settings.tracing),
        service_name=settings.tracing.service_name or f"amana-{settings.service_name}",
        sampler=configured_sampler(settings.tracing),
        attributes={"deployment.environment.name": settings.environment},
    )
    if process_wide:
        trace.set_tracer_provider(tracing.provider)
    return tracing


def install_tracing(
    exporter: SpanExporter,
    *,
    service_name: str = "amana",
    sampler: Sampler | None = None,
    batch: bool = True,
    attributes: Mapping[str, str] | None = None,
) -> Tracing:
    """Makes a provider exporting to `exporter` (through the `PrivacyFilter`) the process's
    tracing, and instruments the database layer. Tests install one with an in-memory exporter
    and `batch=False` (each span exported as it ends)."""
    global _active
    if _active is not None:
        raise RuntimeError("tracing is installed already: uninstall_tracing() first")
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    resource = Resource.create(
        {"service.name": service_name, "service.namespace": "amana", **(attributes or {})}
    )
    provider = TracerProvider(resource=resource, sampler=sampler or ParentBased(ALWAYS_ON))
    filtered = PrivacyFilter(exporter)
    provider.add_span_processor(
        BatchSpanProcessor(filtered) if batch else SimpleSpanProcessor(filtered)
    )
    # Engines are instrumented as they are created (amana_common.db), after this. The
    # instrumentation still declares SQLAlchemy < 2.1 although the engine events it listens to
    # are unchanged in 2.1 (tests/test_tracing.py checks the spans).
    SQLAlchemyInstrumentor().instrument(
        tracer_provider=ChildSpansOnly(provider), skip_dep_check=True
    )
    _active = Tracing(provider, provider.get_tracer(TRACER_NAME))
    return _active


def uninstall_tracing() -> None:
    """Exports what is pending, shuts the provider down and removes the instrumentation (the
    entry point at exit, tests)."""
    global _active
    tracing, _active = _active, None
    if tracing is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().uninstrument()
    tracing.provider.shutdown()


def otlp_exporter(settings: TracingSettings) -> SpanExporter:
    """OTLP over HTTP (protobuf) or gRPC. The base endpoint gets the spec's `/v1/traces` for
    HTTP; the traces endpoint is taken as it is."""
    if settings.exporter_otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        endpoint = settings.exporter_otlp_traces_endpoint or settings.exporter_otlp_endpoint
        return GrpcSpanExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = settings.exporter_otlp_traces_endpoint or (
        settings.exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    )
    return OTLPSpanExporter(endpoint=endpoint)


def configured_sampler(settings: TracingSettings) -> Sampler:
    """OTEL_TRACES_SAMPLER with its argument (the ratio, 1.0 when unset)."""
    from opentelemetry.sdk.trace import sampling

    ratio = 1.0 if settings.traces_sampler_arg is None else settings.traces_sampler_arg
    root: Sampler
    match settings.traces_sampler.removeprefix("parentbased_"):
        case "always_off":
            root = sampling.ALWAYS_OFF
        case "traceidratio":
            root = sampling.TraceIdRatioBased(ratio)
        case _:
            root = sampling.ALWAYS_ON
    return sampling.ParentBased(root) if settings.traces_sampler.startswith("parent") else root


def trace_requests(app: FastAPI, tracing: Tracing) -> None:
    """A server span per request (named by its route template), continuing the caller's
    traceparent; the probes and /metrics have none."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracing.provider,
        excluded_urls=",".join(f"{path}$" for path in UNTRACED_PATHS),
        exclude_spans=["receive", "send"],
    )


def trace_http_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client span per call of `client`, its traceparent sent along; nothing when off."""
    if _active is not None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_active.provider)
    return client


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span: None when tracing is off or no span is."""
    if _active is None:
        return None
    return traceparent_of(trace.get_current_span().get_span_context())


def traceparent_of(span_context: SpanContext | None) -> str | None:
    if span_context is None or not span_context.is_valid:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def traced_job(name: str, **attributes: AttributeValue) -> AbstractContextManager[trace.Span]:
    """A span for one run of a worker job (`"payroll.generation"`, `"disbursement.expiry"`):
    the statements and calls made in the block nest under it, in the current trace or a new
    one. `attributes` are recorded as `amana.<name>` (ids, counts: nothing personal). An error
    leaving the block marks it failed, by its class (never its message). A no-op when tracing
    is off.

        with traced_job("disbursement.dispatch", batch_id=str(batch.id)):
            await send(batch)
    """
    if _active is None:
        return _NO_SPAN
    named = {f"amana.{key}": value for key, value in attributes.items()}
    return _job_span(_active.tracer, name, {"amana.job": name, **named})


@contextmanager
def _job_span(
    tracer: trace.Tracer, name: str, attributes: dict[str, AttributeValue]
) -> Iterator[trace.Span]:
    with tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except Exception as error:
            from amana_common.inbox import describe

            mark_failed(span, describe(error))
            raise


def publish_span(
    topic: str, key: str, payload: bytes, headers: list[tuple[str, bytes]]
) -> AbstractContextManager[trace.Span]:
    """A producer span for sending one outbox event to `topic`, the child of the span that
    wrote the event (its CloudEvent's traceparent); the span's own traceparent is added to
    `headers` for the consumers. A no-op when tracing is off."""
    if _active is None:
        return _NO_SPAN
    envelope = envelope_fields(payload)
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.destination.name": topic,
        "messaging.kafka.message.key": key,
        **_cloudevent_attributes(envelope),
    }
    span = _active.tracer.start_span(
        f"publish {topic}",
        _context_of(envelope.get(TRACEPARENT_HEADER)),
        SpanKind.PRODUCER,
        attributes,
        record_exception=False,
        set_status_on_exception=False,
    )
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, trace.set_span_in_context(span))
    headers.extend((name, value.encode()) for name, value in carrier.items())
    return trace.use_span(
        span, end_on_exit=True, record_exception=False, set_status_on_exception=False
    )


def consume_span(
    consumer: str, records: Sequence[ConsumerRecord[bytes, bytes]]
) -> AbstractContextManager[trace.Span]:
    """A consumer span for applying `records` (of one partition), current in the block: one
    record continues its trace (the record's traceparent header, else its CloudEvent's); a
    run applied together starts a trace linked to each. A no-op when tracing is off."""
    if _active is None:
        return _NO_SPAN
    first = records[0]
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": first.topic,
        "messaging.consumer.group.name": consumer,
        "messaging.destination.partition.id": str(first.partition),
        "messaging.kafka.offset": first.offset,
    }
    links: list[Link] = []
    if len(records) == 1:
        parent = _record_context(first)
        attributes |= _cloudevent_attributes(envelope_fields(first.value))
    else:
        parent = Context()
        attributes["messaging.batch.message_count"] = len(records)
        for record in records:
            linked = trace.get_current_span(_record_context(record)).get_span_context()
            if linked.is_valid:
                links.append(Link(linked))
    return _active.tracer.start_as_current_span(
        f"process {first.topic}",
        parent,
        SpanKind.CONSUMER,
        attributes,
        links,
        record_exception=False,
        set_status_on_exception=False,
    )


def record_outcome(span: trace.Span, outcome: str, failure: str | None = None) -> None:
    """What became of the events of a consumer span; `failure` (a reason without personal
    data) marks it failed."""
    if span.is_recording():
        span.set_attribute("amana.consumer.outcome", outcome)
        if failure is not None:
            mark_failed(span, failure)


def mark_failed(span: trace.Span, reason: str) -> None:
    """Marks `span` failed; `reason` must hold no personal data (`inbox.describe` gives one)."""
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, reason))


def envelope_fields(payload: bytes | None) -> dict[str, str]:
    """The CloudEvent's `id`, `type` and `traceparent`, read without parsing the payload."""
    fields: dict[str, str] = {}
    for match in _ENVELOPE_FIELD.finditer((payload or b"")[:ENVELOPE_HEAD_BYTES]):
        fields.setdefault(match.group(1).decode(), match.group(2).decode("latin-1"))
    return fields


def _cloudevent_attributes(envelope: dict[str, str]) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    if "id" in envelope:
        attributes["messaging.message.id"] = envelope["id"]
        attributes["cloudevents.event_id"] = envelope["id"]
    if "type" in envelope:
        attributes["cloudevents.event_type"] = envelope["type"]
    return attributes


def _record_context(record: ConsumerRecord[bytes, bytes]) -> Context:
    for name, value in record.headers or ():
        if name == TRACEPARENT_HEADER:
            return _context_of(value.decode("latin-1"))
    return _context_of(envelope_fields(record.value).get(TRACEPARENT_HEADER))


def _context_of(traceparent: str | None) -> Context:
    """The context a W3C traceparent names (empty, so a new trace, when there is none)."""
    if not traceparent:
        return Context()
    return _W3C.extract({TRACEPARENT_HEADER: traceparent}, Context())


class ChildSpansOnly(trace.TracerProvider):
    """Hands out tracers whose spans exist only inside another span: a statement run outside
    any request, event or job (the relay's and consumers' polling) makes no trace of its own."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._provider = provider

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return _ChildSpanTracer(
            self._provider.get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes
            )
        )


class _ChildSpanTracer(trace.Tracer):
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> trace.Span:
        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        *args: Any,
        end_on_exit: bool = True,
        **kwargs: Any,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, *args, **kwargs)
        with trace.use_span(span, end_on_exit=end_on_exit) as current:
            yield current


class PrivacyFilter(SpanExporter):
    """Passes spans on without what may hold personal data: URLs lose their query string,
    exception events keep only the exception's type, and the status descriptions of the
    instrumentations (a database error's text quotes the row it refused) are dropped. Amana's
    own spans describe failures by class and SQLSTATE already."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export([scrubbed(span) for span in spans])

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    ours = span.instrumentation_scope is not None and span.instrumentation_scope.name == TRACER_NAME
    status = span.status
    if not ours and status.description:
        status = Status(status.status_code)
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_scrubbed_attributes(span.attributes or {}),
        events=[_scrubbed_event(event) for event in span.events],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _scrubbed_attributes(attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    return {
        name: value.split("?", 1)[0] if name in URL_ATTRIBUTES and isinstance(value, str) else value
        for name, value in attributes.items()
        if name not in QUERY_ATTRIBUTES
    }


def _scrubbed_event(event: Event) -> Event:
    if event.name != "exception":
        return event
    kept = {k: v for k, v in (event.attributes or {}).items() if k == "exception.type"}
    return Event(event.name, kept, event.timestamp)
