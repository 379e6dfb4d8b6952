"""Streams a request to its upstream and the answer back; bodies are never buffered whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from amana_common.errors import Problem
from amana_common.observability import request_id_var, traceparent_var
from gateway.settings import Route

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
# The gateway sets these on its own answer (its request id, its span).
REPLACED_IN_RESPONSE = frozenset({"x-request-id", "traceparent"})
METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(Exception):
    pass


def too_large(limit: int) -> Problem:
    return Problem(413, "payload-too-large", f"request body exceeds the limit of {limit} bytes")


class UpstreamProxy:
    def __init__(self, max_connections: int) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        # Each request sets its route's timeout; this default only guards other calls.
        default = httpx.Timeout(30.0, connect=5.0)
        self.client = httpx.AsyncClient(limits=limits, timeout=default, follow_redirects=False)

    async def close(self) -> None:
        await self.client.aclose()

    async def forward(self, request: Request, route: Route, rest: str) -> StreamingResponse:
        declared = request.headers.get("content-length")
        if declared is not None and (
            not declared.isdigit() or int(declared) > route.max_body_bytes
        ):
            raise too_large(route.max_body_bytes)
        body = None
        if request.method in METHODS_WITH_BODY:
            body = _bounded(request.stream(), route.max_body_bytes)
        upstream_request = self.client.build_request(
            request.method,
            _upstream_url(route, rest, request.url.query),
            headers=_upstream_headers(request, route),
            content=body,
            timeout=httpx.Timeout(route.timeout_s, connect=min(5.0, route.timeout_s)),
        )
        try:
            upstream = await self.client.send(upstream_request, stream=True)
        except BodyTooLarge as error:
            raise too_large(route.max_body_bytes) from error
        except httpx.TimeoutException as error:
            raise Problem(
                504, "gateway-timeout", f"{route.service} did not answer in {route.timeout_s}s"
            ) from error
        except httpx.TransportError as error:
            if isinstance(error.__cause__, BodyTooLarge) or isinstance(
                error.__context__, BodyTooLarge
            ):
                raise too_large(route.max_body_bytes) from error
            raise Problem(502, "bad-gateway", f"{route.service} is unavailable") from error
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=_downstream_headers(upstream, request, route),
            background=BackgroundTask(upstream.aclose),
        )


def _upstream_url(route: Route, rest: str, query: str) -> str:
    url = route.upstream + route.upstream_prefix + rest
    return f"{url}?{query}" if query else url


async def _bounded(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """Passes the body through chunk by chunk, failing once it grows past `limit`."""
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        yield chunk


def _upstream_headers(request: Request, route: Route) -> list[tuple[str, str]]:
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    headers = [(k, v) for k, v in headers if k.lower() not in ("x-request-id", "traceparent")]
    client = request.client.host if request.client else "unknown"
    prior = request.headers.get("x-forwarded-for")
    headers += [
        ("x-request-id", request_id_var.get() or ""),
        ("traceparent", traceparent_var.get() or ""),
        ("x-forwarded-for", f"{prior}, {client}" if prior else client),
        ("x-forwarded-proto", request.url.scheme),
        ("x-forwarded-host", request.headers.get("host", "")),
        ("x-forwarded-prefix", route.prefix),
    ]
    return headers


def _downstream_headers(upstream: httpx.Response, request: Request, route: Route) -> dict[str, str]:
    headers = {
        k: v
        for k, v in upstream.headers.items()
        if k.lower() not in HOP_BY_HOP and k.lower() not in REPLACED_IN_RESPONSE
    }
    if location := headers.get("location"):
        headers["location"] = public_location(location, request, route)
    return headers


def public_location(location: str, request: Request, route: Route) -> str:
    """An upstream's absolute Location points inside the cluster: answer the gateway's URL."""
    internal = route.upstream + route.upstream_prefix
    if location.startswith(internal):
        return str(request.base_url).rstrip("/") + route.prefix + location[len(internal) :]
    if location.startswith(route.upstream_prefix + "/"):
        return route.prefix + location[len(route.upstream_prefix) :]
    return location
