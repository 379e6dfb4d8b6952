"""Streams a request to its upstream and the answer back; bodies are never buffered whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

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
# The gateway sets these itself, both ways: its request id and its span of the trace.
SET_BY_GATEWAY = frozenset({"x-request-id", "traceparent"})
NOT_PASSED_ON = HOP_BY_HOP | SET_BY_GATEWAY
METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BUFFERED_RESPONSE_BYTES = 256 * 1024


class BodyTooLarge(Exception):
    pass


def too_large(limit: int) -> Problem:
    return Problem(413, "payload-too-large", f"request body exceeds the limit of {limit} bytes")


class UpstreamProxy:
    """aiohttp on the data path: it costs a fraction of httpx's CPU per proxied request."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: it must belong to the running loop
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, limit_per_host=self.max_connections
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(self, request: Request, route: Route, rest: str) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            raise Problem(400, "bad-request", "Content-Length must be a number")
        if declared is not None and int(declared) > route.max_body_bytes:
            raise too_large(route.max_body_bytes)
        body = None
        if request.method in METHODS_WITH_BODY and (declared != "0"):
            body = _bounded(request.stream(), route.max_body_bytes)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(5.0, route.timeout_s), sock_read=route.timeout_s
        )
        try:
            upstream = await self.session.request(
                request.method,
                _upstream_url(route, rest, request.url.query),
                headers=_upstream_headers(request, route),
                data=body,
                timeout=timeout,
                allow_redirects=False,
            )
            return await _answer(upstream, request, route)
        except BodyTooLarge as error:
            raise too_large(route.max_body_bytes) from error
        except TimeoutError as error:
            raise Problem(
                504, "gateway-timeout", f"{route.service} did not answer in {route.timeout_s}s"
            ) from error
        except aiohttp.ClientError as error:
            if BodyTooLarge in (type(error.__cause__), type(error.__context__)):
                raise too_large(route.max_body_bytes) from error
            raise Problem(502, "bad-gateway", f"{route.service} is unavailable") from error


async def _answer(upstream: aiohttp.ClientResponse, request: Request, route: Route) -> Response:
    """Small answers are read whole (cheaper); large or unsized ones are streamed."""
    headers = _downstream_headers(upstream, request, route)
    length = upstream.content_length
    if length is not None and length <= BUFFERED_RESPONSE_BYTES:
        try:
            return Response(await upstream.read(), upstream.status, headers=headers)
        finally:
            upstream.release()
    return StreamingResponse(
        upstream.content.iter_any(),
        status_code=upstream.status,
        headers=headers,
        background=BackgroundTask(upstream.release),
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
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in NOT_PASSED_ON]
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


def _downstream_headers(
    upstream: aiohttp.ClientResponse, request: Request, route: Route
) -> dict[str, str]:
    headers = {k.lower(): v for k, v in upstream.headers.items() if k.lower() not in NOT_PASSED_ON}
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
