"""Request bodies over the limit are a 413 problem+json before the route sees them, whether
their length is declared or they arrive chunked; bodies under the limit pass through intact."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, Request, Response

from amana_common.app import create_app
from amana_common.errors import PROBLEM_JSON, TYPE_BASE
from amana_common.settings import ServiceSettings

LIMIT = 1024
seen: list[bytes] = []
router = APIRouter()


@router.post("/echo")
async def echo(request: Request) -> Response:
    body = await request.body()
    seen.append(body)
    return Response(body, media_type="application/octet-stream")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    seen.clear()
    settings = ServiceSettings(service_name="demo", environment="test", max_body_bytes=LIMIT)
    app = create_app(settings, [router], title="demo", uses_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == TYPE_BASE + "payload-too-large"
    assert body["status"] == 413
    assert str(LIMIT) in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert seen == [], "the route must not run"


async def test_declared_length_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", content=b"x" * (LIMIT + 1))

    assert_too_large(response)


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", content=chunks(*[b"y" * 200] * 6))

    assert "content-length" not in response.request.headers
    assert_too_large(response)


async def test_body_at_the_limit_passes_intact(client: httpx.AsyncClient) -> None:
    payload = bytes(range(256)) * (LIMIT // 256)

    response = await client.post("/echo", content=payload)

    assert response.status_code == 200
    assert response.content == payload
    assert seen == [payload]


async def test_chunked_body_under_the_limit_passes_intact(client: httpx.AsyncClient) -> None:
    parts = [b"a" * 300, b"b" * 300, b"", b"c" * 300]

    response = await client.post("/echo", content=chunks(*parts))

    assert "content-length" not in response.request.headers
    assert response.status_code == 200
    assert response.content == b"".join(parts)
    assert seen == [b"".join(parts)]


async def test_a_request_without_a_body_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo")

    assert response.status_code == 200
    assert response.content == b""
