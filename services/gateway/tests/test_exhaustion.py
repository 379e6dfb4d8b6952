"""Exhaustion: one client's slow uploads must not take the gateway from everyone else.

Before, one pool of connections served every upstream, a slow upload held its connection for
as long as the client cared to trickle, and nothing limited one client's uploads: 200 slow
uploads from one token hung every other user.
"""

import asyncio
from collections.abc import AsyncIterator

import httpx

from gateway.main import create_gateway_app

from .conftest import Recorder, client_of, gateway_settings
from .test_gateway import HOUSEHOLD, PROBLEM, token

ANSWER_WITHIN_S = 10


def trickle(release: asyncio.Event) -> AsyncIterator[bytes]:
    """An upload that sends one chunk, then nothing until `release` is set."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 1024
        await release.wait()
        yield b"y" * 1024

    return chunks()


async def slow_uploads(
    client: httpx.AsyncClient, headers: dict[str, str], release: asyncio.Event, count: int
) -> list[asyncio.Task[httpx.Response]]:
    tasks = [
        asyncio.create_task(
            client.post(f"/bulk/upload-{n}", headers=headers, content=trickle(release))
        )
        for n in range(count)
    ]
    await asyncio.sleep(0.5)  # every upload has started and sent its first chunk
    return tasks


async def finish(release: asyncio.Event, tasks: list[asyncio.Task[httpx.Response]]) -> list[int]:
    release.set()
    done = await asyncio.wait_for(asyncio.gather(*tasks), ANSWER_WITHIN_S)
    return [response.status_code for response in done]


async def test_one_subjects_slow_uploads_do_not_block_another_subject(
    upstreams: dict[str, str], recorder: Recorder
) -> None:
    settings = gateway_settings(upstreams, upstream_connections=4, max_concurrent_per_client=3)
    app = create_gateway_app(settings)
    release = asyncio.Event()
    async with app.router.lifespan_context(app), client_of(app) as client:
        uploader = await token(client, "registrar-1", "s3cret!")
        other = await token(client, "analyst-1", "an4lyst")
        uploads = await slow_uploads(client, uploader, release, count=12)

        answer = await asyncio.wait_for(client.get("/rec/echo/mine", headers=other), 5)
        statuses = await finish(release, uploads)

    assert answer.status_code == 200
    assert statuses.count(200) == 3, statuses
    assert statuses.count(429) == 9, statuses


async def test_a_busy_upstream_does_not_block_the_other_upstreams(
    upstreams: dict[str, str],
) -> None:
    settings = gateway_settings(upstreams, upstream_connections=2, max_concurrent_per_client=50)
    app = create_gateway_app(settings)
    release = asyncio.Event()
    async with app.router.lifespan_context(app), client_of(app) as client:
        uploader = await token(client, "registrar-1", "s3cret!")
        registrar = await token(client, "registrar-1", "s3cret!")
        uploads = await slow_uploads(client, uploader, release, count=2)  # the pool of /bulk

        enrolled = await asyncio.wait_for(
            client.post("/registry/households", json=HOUSEHOLD, headers=registrar), 5
        )
        await finish(release, uploads)

    assert enrolled.status_code == 201, enrolled.text


async def test_waiting_for_a_connection_is_bounded_by_the_connect_timeout(
    upstreams: dict[str, str],
) -> None:
    settings = gateway_settings(
        upstreams,
        upstream_connections=1,
        upstream_connect_timeout_s=0.5,
        max_concurrent_per_client=50,
    )
    app = create_gateway_app(settings)
    release = asyncio.Event()
    async with app.router.lifespan_context(app), client_of(app) as client:
        headers = await token(client, "registrar-1", "s3cret!")
        uploads = await slow_uploads(client, headers, release, count=1)

        waiting = await asyncio.wait_for(client.get("/bulk/other", headers=headers), 5)
        await finish(release, uploads)

    assert waiting.status_code == 503, waiting.text
    assert waiting.headers["content-type"] == PROBLEM
    assert "retry-after" in waiting.headers


async def test_an_upload_that_stops_sending_is_408_after_the_idle_timeout(
    upstreams: dict[str, str], recorder: Recorder
) -> None:
    settings = gateway_settings(upstreams, body_idle_timeout_s=0.5)
    app = create_gateway_app(settings)
    release = asyncio.Event()
    async with app.router.lifespan_context(app), client_of(app) as client:
        headers = await token(client, "registrar-1", "s3cret!")
        stalled = client.post("/bulk/stalled", headers=headers, content=trickle(release))
        response = await asyncio.wait_for(stalled, ANSWER_WITHIN_S)
    release.set()

    assert response.status_code == 408, response.text
    assert response.headers["content-type"] == PROBLEM
    assert recorder.requests == [], "the upstream never handles a partial body"
