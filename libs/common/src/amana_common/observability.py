"""Structured JSON logs, request id and W3C traceparent propagation, Prometheus metrics.

With tracing on (`amana_common.tracing`) the traceparent is the current span's: a request's
is its server span's, which the instrumentation continued from the caller. Off, the request
continues the caller's trace with a span id of its own, as it always did."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amana_common import tracing

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

REQUESTS = Counter(
    "amana_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
LATENCY = Histogram(
    "amana_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def current_traceparent() -> str | None:
    """The current span's traceparent (an event written now carries it)."""
    return tracing.current_traceparent() or traceparent_var.get()


def trace_ids() -> tuple[str | None, str | None]:
    """The current trace id and span id, for the logs."""
    value = current_traceparent()
    if not value:
        return None, None
    _, trace, span, _ = value.split("-")
    return trace, span


def child_traceparent(incoming: str | None) -> str:
    """Continues the caller's trace with a new span id, or starts a new trace."""
    match = TRACEPARENT.fullmatch(incoming or "")
    trace = match.group(1) if match and match.group(1) != "0" * 32 else secrets.token_hex(16)
    flags = match.group(3) if match else "01"
    return f"00-{trace}-{secrets.token_hex(8)}-{flags}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        trace, span = trace_ids()
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
            "trace_id": trace,
            "span_id": span,
        }
        for key in ("service", "route", "status", "duration_ms", "audit"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    logging.getLogger("uvicorn.access").disabled = True


class RequestContextMiddleware:
    """Sets request id and traceparent for the request, echoes them, records metrics."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        incoming_id = headers.get("x-request-id", "")
        request_id = incoming_id if REQUEST_ID.fullmatch(incoming_id) else secrets.token_hex(12)
        traceparent = tracing.current_traceparent() or child_traceparent(headers.get("traceparent"))
        id_token = request_id_var.set(request_id)
        trace_token = traceparent_var.set(traceparent)
        started = time.perf_counter()
        status = 500

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (b"traceparent", traceparent.encode()),
                ]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        finally:
            route = _route_template(scope)
            LATENCY.labels(self.service, scope["method"], route).observe(
                time.perf_counter() - started
            )
            REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
            request_id_var.reset(id_token)
            traceparent_var.reset(trace_token)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
