"""Streams a request to its upstream and the answer back; bodies are never buffered whole.

What reaches an upstream is framed by the gateway alone: the client's framing headers
(Content-Length, Transfer-Encoding, Expect, the hop-by-hop ones) are never passed on, so a
request cannot announce a body the gateway does not send and desynchronise the pooled upstream
connection for the next user. The client's forwarding headers are replaced by the gateway's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, quote_from_bytes

import aiohttp
from fastapi import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from yarl import URL

from amana_common.errors import Problem
from amana_common.observability import request_id_var, traceparent_var
from amana_common.tracing import active_tracing
from gateway.settings import GatewaySettings, Route

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
# Framing of the client's request: the gateway frames what it sends itself.
FRAMING = frozenset({"content-length", "transfer-encoding", "expect"})
# The gateway sets these itself, both ways: its request id and its span of the trace.
SET_BY_GATEWAY = frozenset({"x-request-id", "traceparent"})
# What a client claims about where the request came from; the gateway says it instead.
CLIENT_FORWARDING = frozenset({"forwarded", "x-real-ip", "x-client-ip"})
NOT_PASSED_UP = HOP_BY_HOP | FRAMING | SET_BY_GATEWAY | CLIENT_FORWARDING
# The upstream's server and date headers: the gateway's server adds its own.
NOT_PASSED_DOWN = HOP_BY_HOP | SET_BY_GATEWAY | {"server", "date"}
METHODS_WITHOUT_BODY = frozenset({"GET", "HEAD", "OPTIONS"})
# An upstream's operations endpoints are for the cluster (probes, Prometheus), not the public.
UPSTREAM_OPERATIONS = frozenset({"/metrics", "/healthz", "/readyz", "/openapi.json", "/docs"})
BUFFERED_RESPONSE_BYTES = 256 * 1024
PATH_SAFE = "/:@!$&'()*+,;=~"  # RFC 3986 pchar and "/": left as they are
QUERY_SAFE = PATH_SAFE + "?%"  # a query is passed on as the client encoded it


class BodyRefused(Exception):
    """The client's body broke a rule while it was streamed to the upstream."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def too_large(limit: int) -> Problem:
    return Problem(413, "payload-too-large", f"request body exceeds the limit of {limit} bytes")


def body_idle(idle_timeout_s: float) -> Problem:
    return Problem(
        408, "request-timeout", f"the request body stalled for more than {idle_timeout_s}s"
    )


class UpstreamProxy:
    """aiohttp on the data path: it costs a fraction of httpx's CPU per proxied request."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: it must belong to the running loop
            # A pool per upstream (host and port): one slow service cannot take the
            # connections of the others.
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self.settings.upstream_connections
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                trace_configs=upstream_trace_configs(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(
        self, request: Request, route: Route, rest: str, client: str, on_done: Callable[[], None]
    ) -> Response:
        """Sends the request on and answers the upstream's response; `on_done` is called once
        the exchange is over (the response sent, or the request failed)."""
        try:
            response = await self._exchange(request, route, rest, client)
        except BaseException:
            on_done()
            raise
        if isinstance(response, _UpstreamStream):
            response.on_close.append(on_done)
        else:
            on_done()
        return response

    async def _exchange(self, request: Request, route: Route, rest: str, client: str) -> Response:
        refuse_operations_path(route, rest)
        body, framing = self._body(request, route)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.settings.upstream_connect_timeout_s,  # includes waiting for the pool
            sock_connect=self.settings.upstream_connect_timeout_s,
            sock_read=route.timeout_s,
        )
        try:
            upstream = await self.session.request(
                request.method,
                upstream_url(route, rest, request.scope.get("query_string", b"")),
                headers=upstream_headers(request, route, client, self.settings) + framing,
                data=body,
                timeout=timeout,
                allow_redirects=False,
            )
            return await _answer(upstream, route, self.settings.public_base_url)
        except (aiohttp.ClientError, TimeoutError, BodyRefused) as error:
            raise _problem(error, route, self.settings) from error

    def _body(
        self, request: Request, route: Route
    ) -> tuple[AsyncIterator[bytes] | None, list[tuple[str, str]]]:
        """The body to stream on and the framing header that announces it, if any."""
        declared = declared_length(request)
        if request.method in METHODS_WITHOUT_BODY:
            if carries_body(request):
                raise Problem(
                    400, "body-not-allowed", f"a {request.method} request carries no body"
                )
            return None, []
        if declared is not None and declared > route.max_body_bytes:
            raise too_large(route.max_body_bytes)
        if declared == 0:
            return None, [("content-length", "0")]
        body = bounded(
            request.stream(), route.max_body_bytes, self.settings.body_idle_timeout_s, declared
        )
        # With a length the upstream gets exactly that many bytes (bounded() checks); without
        # one aiohttp sends the body chunked.
        return body, [] if declared is None else [("content-length", str(declared))]


def carries_body(request: Request) -> bool:
    return "transfer-encoding" in request.headers or bool(declared_length(request))


def upstream_trace_configs() -> list[aiohttp.TraceConfig]:
    """With tracing on, a client span per upstream call, the child of the request's server
    span; the traceparent sent upstream is then the client span's. Off, none: nothing runs."""
    tracing = active_tracing()
    if tracing is None:
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    return [create_trace_config(tracer_provider=tracing.provider)]


def declared_length(request: Request) -> int | None:
    values = request.headers.getlist("content-length")
    if not values:
        return None
    if len(set(values)) != 1 or not values[0].isdigit():
        raise Problem(400, "bad-request", "Content-Length must be one number")
    return int(values[0])


def refuse_operations_path(route: Route, rest: str) -> None:
    path = (route.upstream_prefix + rest).rstrip("/") or "/"
    if path in UPSTREAM_OPERATIONS or path.startswith("/docs/"):
        raise Problem(404, "not-found", "no such path")


def upstream_url(route: Route, rest: str, query: bytes) -> URL:
    """The upstream URL, encoded once and left as it is: yarl would otherwise decode and
    normalise it, and an upstream could see a different path than the gateway routed."""
    url = route.upstream + route.upstream_prefix + quote(rest, safe=PATH_SAFE)
    if query:
        url += "?" + quote_from_bytes(query, safe=QUERY_SAFE)
    return URL(url, encoded=True)


async def bounded(
    stream: AsyncIterator[bytes], limit: int, idle_timeout_s: float, declared: int | None = None
) -> AsyncIterator[bytes]:
    """Passes the body through chunk by chunk: at most `limit` bytes, exactly `declared` when
    the client announced a length, and never waiting more than `idle_timeout_s` for a chunk."""
    chunks = aiter(stream)
    size = 0
    while True:
        try:
            async with asyncio.timeout(idle_timeout_s):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise BodyRefused(body_idle(idle_timeout_s)) from None
        size += len(chunk)
        if size > limit:
            raise BodyRefused(too_large(limit))
        yield chunk
    if declared is not None and size != declared:
        raise BodyRefused(
            Problem(
                400, "bad-request", f"the body has {size} bytes, Content-Length said {declared}"
            )
        )


def upstream_headers(
    request: Request, route: Route, client: str, settings: GatewaySettings
) -> list[tuple[str, str]]:
    named_by_connection = {
        token.strip().lower() for token in request.headers.get("connection", "").split(",")
    }
    headers = [
        (name, value)
        for name, value in request.headers.items()
        if name not in NOT_PASSED_UP
        and name not in named_by_connection
        and not name.startswith("x-forwarded-")
    ]
    scheme = URL(settings.public_base_url).scheme if settings.public_base_url else None
    headers += [
        ("x-request-id", request_id_var.get() or ""),
        ("traceparent", traceparent_var.get() or ""),
        ("x-forwarded-for", client),
        ("x-forwarded-proto", scheme or request.url.scheme),
        ("x-forwarded-prefix", route.prefix),
    ]
    return headers


def _problem(error: BaseException, route: Route, settings: GatewaySettings) -> Problem:
    refused = _body_refusal(error)
    if refused is not None:
        return refused
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return Problem(
            503,
            "upstream-busy",
            f"no connection to {route.service} within {settings.upstream_connect_timeout_s}s",
            headers={"Retry-After": "1"},
        )
    if isinstance(error, TimeoutError):
        return Problem(
            504, "gateway-timeout", f"{route.service} did not answer in {route.timeout_s}s"
        )
    return Problem(502, "bad-gateway", f"{route.service} is unavailable")


def _body_refusal(error: BaseException | None) -> Problem | None:
    """The refusal of the client's body behind an aiohttp error, if that is what it was."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, BodyRefused):
            return error.problem
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class _UpstreamStream(StreamingResponse):
    """An upstream's answer streamed on; its connection (and the client's slot) are let go
    however the stream ends, a client that went away included."""

    def __init__(self, upstream: aiohttp.ClientResponse, headers: dict[str, str]) -> None:
        super().__init__(upstream.content.iter_any(), status_code=upstream.status, headers=headers)
        self.on_close: list[Callable[[], Any]] = [upstream.release]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for close in self.on_close:
                close()


async def _answer(upstream: aiohttp.ClientResponse, route: Route, base_url: str) -> Response:
    """Small answers are read whole (cheaper); large or unsized ones are streamed."""
    headers = _downstream_headers(upstream, route, base_url)
    length = upstream.content_length
    if length is not None and length <= BUFFERED_RESPONSE_BYTES:
        try:
            return Response(await upstream.read(), upstream.status, headers=headers)
        finally:
            upstream.release()
    return _UpstreamStream(upstream, headers)


def _downstream_headers(
    upstream: aiohttp.ClientResponse, route: Route, base_url: str
) -> dict[str, str]:
    headers = {
        k.lower(): v for k, v in upstream.headers.items() if k.lower() not in NOT_PASSED_DOWN
    }
    if location := headers.get("location"):
        headers["location"] = public_location(location, route, base_url)
    return headers


def public_location(location: str, route: Route, base_url: str) -> str:
    """An upstream's Location points inside the cluster: answer the gateway's path, absolute
    only under the configured public base URL (never from the client's Host header). The
    upstream may have built it with the forwarded scheme, so only its host and port count."""
    target = URL(location)
    if target.absolute:
        upstream = URL(route.upstream)
        if target.host != upstream.host or target.explicit_port not in (None, upstream.port):
            return location  # somewhere else: left alone
        location = target.raw_path_qs
    prefix = route.upstream_prefix
    if location == prefix or location.startswith((prefix + "/", prefix + "?")):
        return base_url + route.prefix + location[len(prefix) :]
    return location
