"""Paths: what reaches an upstream is exactly the path the gateway routed, never something an
upstream would resolve differently (`/providers/..%2Fmetrics` used to reach `/metrics`), and
never an upstream's operations endpoints."""

from collections.abc import AsyncIterator

import httpx
import pytest

from amana_common.testing.clients import serving
from gateway.main import create_gateway_app

from .conftest import Recorder, gateway_settings
from .test_gateway import PROBLEM, token


@pytest.fixture
async def served_gateway(upstreams: dict[str, str]) -> AsyncIterator[str]:
    """The gateway on a real server: only a raw request line can carry `..` or `\\`."""
    async with serving(create_gateway_app(gateway_settings(upstreams))) as base_url:
        yield base_url


async def raw_get(base_url: str, raw_path: str, authorization: str) -> tuple[int, str]:
    """Sends the request line byte for byte (HTTP clients normalise `..` away)."""
    import asyncio

    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET {raw_path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: {authorization}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    answer = (await asyncio.wait_for(reader.read(), 10)).decode(errors="replace")
    writer.close()
    status = int(answer.split(" ", 2)[1])
    return status, answer


@pytest.fixture
async def authorization(served_gateway: str) -> str:
    async with httpx.AsyncClient(base_url=served_gateway) as client:
        return (await token(client, "registrar-1", "s3cret!"))["Authorization"]


@pytest.mark.parametrize(
    "raw_path",
    [
        "/bulk/..%2Fmetrics",  # the provider's case: an upstream prefix, then ..%2F
        "/rec/..%2fmetrics",
        "/rec/%2e%2e/metrics",
        "/rec/echo/%2E%2E%2F%2E%2E%2Fmetrics",
        "/rec/echo/../../metrics",
        "/rec/echo/./x",
        "/rec//metrics",
        "/rec/echo//x",
        "/rec/echo%5C..%5Cmetrics",
        "/rec/echo\\..\\metrics",
        "/rec/echo/%00",
    ],
)
async def test_ambiguous_paths_are_refused_before_routing(
    served_gateway: str, authorization: str, recorder: Recorder, raw_path: str
) -> None:
    status, answer = await raw_get(served_gateway, raw_path, authorization)

    assert status == 400, answer
    assert PROBLEM in answer
    assert "operations" not in answer
    assert recorder.requests == []


async def test_encoded_characters_reach_the_upstream_exactly_once_decoded(
    served_gateway: str, authorization: str
) -> None:
    status, answer = await raw_get(served_gateway, "/rec/echo/a%20b/%252e%252e", authorization)

    assert status == 200, answer
    assert '"path":"/echo/a b/%2e%2e"' in answer


@pytest.mark.parametrize(
    "path",
    [
        "/rec/metrics",
        "/rec/metrics/",
        "/rec/healthz",
        "/rec/readyz",
        "/rec/docs",
        "/rec/docs/oauth2-redirect",
        "/rec/openapi.json",
    ],
)
async def test_an_upstreams_operations_endpoints_are_not_proxied(
    gateway: httpx.AsyncClient, recorder: Recorder, path: str
) -> None:
    headers = await token(gateway, "registrar-1", "s3cret!")

    response = await gateway.get(path, headers=headers)

    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == PROBLEM
    assert recorder.requests == []


async def test_public_paths_match_the_whole_path(
    gateway: httpx.AsyncClient, recorder: Recorder
) -> None:
    callback = await gateway.post("/rec/echo/callbacks/psp-1", content=b"{}")
    beyond = await gateway.post("/rec/echo/callbacks/psp-1/and/more", content=b"{}")

    assert callback.status_code == 200
    assert beyond.status_code == 401
    assert recorder.requests == [{"path": "/echo/callbacks/psp-1", "size": 2}]
