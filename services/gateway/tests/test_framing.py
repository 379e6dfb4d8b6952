"""Request framing: the gateway never announces a body to an upstream that it does not send.

A GET carrying `Content-Length: 64` used to be forwarded with that header and no body, so the
upstream read the next request on the pooled connection as that body: the next user, whoever
it was, got `400 Invalid HTTP request received`.
"""

import asyncio
from uuid import uuid4

import pytest

from gateway.main import create_gateway_app

from .conftest import Recorder, client_of, gateway_settings
from .test_gateway import PROBLEM, token


async def test_a_get_announcing_a_body_cannot_poison_the_next_users_pooled_connection(
    upstreams: dict[str, str], recorder: Recorder
) -> None:
    app = create_gateway_app(gateway_settings(upstreams, upstream_connections=1))
    async with (
        app.router.lifespan_context(app),
        client_of(app, "203.0.113.7") as alice,
        client_of(app, "198.51.100.9") as bob,
    ):
        alice_auth = await token(alice, "registrar-1", "s3cret!")
        bob_auth = await token(bob, "analyst-1", "an4lyst")

        smuggling = await alice.get(
            "/rec/plain/alice", headers=alice_auth | {"Content-Length": "64"}
        )
        following = await asyncio.wait_for(bob.get("/rec/plain/bob", headers=bob_auth), 10)

    assert following.status_code == 200, following.text
    assert following.json() == {"path": "/plain/bob"}
    assert smuggling.status_code == 400, smuggling.text
    assert smuggling.headers["content-type"] == PROBLEM
    assert smuggling.json()["type"].endswith("/body-not-allowed")
    assert recorder.requests == [{"path": "/plain/bob"}]


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
@pytest.mark.parametrize(
    "framing",
    [{"Content-Length": "5"}, {"Transfer-Encoding": "chunked"}],
    ids=["length", "chunked"],
)
async def test_a_body_on_a_method_without_one_is_refused_before_any_upstream(
    upstreams: dict[str, str], recorder: Recorder, method: str, framing: dict[str, str]
) -> None:
    app = create_gateway_app(gateway_settings(upstreams))
    async with app.router.lifespan_context(app), client_of(app) as client:
        auth = await token(client, "registrar-1", "s3cret!")
        response = await client.request(
            method, "/rec/plain/x", headers=auth | framing, content=b"hello"
        )

    assert response.status_code == 400
    assert recorder.requests == []


async def test_a_body_shorter_than_its_declared_length_is_refused(
    upstreams: dict[str, str], recorder: Recorder
) -> None:
    app = create_gateway_app(gateway_settings(upstreams, upstream_connections=1))
    async with app.router.lifespan_context(app), client_of(app) as client:
        auth = await token(client, "registrar-1", "s3cret!")
        short = await client.post(
            "/rec/echo/x", headers=auth | {"Content-Length": "10"}, content=b"12345"
        )
        exact = await client.post("/rec/echo/y", headers=auth, content=b"12345")

    assert short.status_code == 400, short.text
    assert exact.status_code == 200, exact.text
    assert exact.json()["headers"]["content-length"] == "5"
    assert recorder.requests == [{"path": "/echo/y", "size": 5}]


async def test_a_body_on_a_method_the_path_does_not_serve_is_405_with_allow(
    upstreams: dict[str, str],
) -> None:
    """405 tells more than 400: no body would make OPTIONS /registry/households/{id} work."""
    app = create_gateway_app(gateway_settings(upstreams))
    async with app.router.lifespan_context(app), client_of(app) as client:
        auth = await token(client, "registrar-1", "s3cret!")
        unserved = await client.request(
            "OPTIONS", f"/registry/households/{uuid4()}", headers=auth, content=b"hello"
        )
        served = await client.request("GET", "/registry/households", headers=auth, content=b"hello")

    assert unserved.status_code == 405, unserved.text
    assert unserved.headers["content-type"] == PROBLEM
    allowed = unserved.headers["allow"].split(", ")
    assert "GET" in allowed and "OPTIONS" not in allowed
    assert served.status_code == 400, served.text
    assert served.json()["type"].endswith("/body-not-allowed")
