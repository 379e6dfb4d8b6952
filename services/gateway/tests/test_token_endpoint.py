"""The development token endpoint: served only when asked for, never in production, with a
bounded body and its password hashing off the event loop."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from pydantic import ValidationError

from gateway.main import create_gateway_app
from gateway.secrets import hash_secret
from gateway.settings import ClientCredentials, GatewaySettings

from .conftest import JWT_SECRET, Recorder, client_of, gateway_client, gateway_settings
from .test_gateway import PROBLEM

CREDENTIALS = {"grant_type": "client_credentials", "client_id": "registrar-dev"}
SLOW_ITERATIONS = 2_000_000


async def test_the_token_endpoint_is_not_served_unless_enabled(upstreams: dict[str, str]) -> None:
    for environment in ("development", "test"):
        settings = gateway_settings(upstreams, environment=environment, dev_token_endpoint=False)
        async for gateway in gateway_client(settings):
            response = await gateway.post(
                "/auth/token", data=CREDENTIALS | {"client_secret": "registrar-dev-secret"}
            )
        assert response.status_code == 404, environment


async def test_development_clients_only_in_development_with_the_endpoint_enabled(
    upstreams: dict[str, str],
) -> None:
    statuses = {}
    for environment in ("development", "test"):
        settings = gateway_settings(upstreams, environment=environment, clients=[])
        async for gateway in gateway_client(settings):
            response = await gateway.post(
                "/auth/token", data=CREDENTIALS | {"client_secret": "registrar-dev-secret"}
            )
        statuses[environment] = response.status_code

    assert statuses == {"development": 200, "test": 401}


def test_production_refuses_the_development_token_endpoint() -> None:
    with pytest.raises(ValidationError, match="DEV_TOKEN_ENDPOINT"):
        GatewaySettings(
            environment="production",
            jwks_url="https://idp.example.org/certs",
            dev_token_endpoint=True,
        )


def test_the_endpoint_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ENVIRONMENT", "development")
    monkeypatch.setenv("GATEWAY_JWT_SECRET", JWT_SECRET)

    assert GatewaySettings().dev_token_endpoint is False


async def test_a_token_request_body_is_bounded(gateway: httpx.AsyncClient) -> None:
    huge = b"grant_type=client_credentials&client_id=x&client_secret=" + b"x" * (1 << 20)

    declared = await gateway.post(
        "/auth/token", content=huge, headers={"content-type": "application/x-www-form-urlencoded"}
    )

    async def chunked() -> Any:
        for start in range(0, len(huge), 4096):
            yield huge[start : start + 4096]

    streamed = await gateway.post(
        "/auth/token",
        content=chunked(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert declared.status_code == streamed.status_code == 413
    assert declared.headers["content-type"] == PROBLEM


async def test_hashing_a_client_secret_does_not_stall_the_event_loop(
    upstreams: dict[str, str],
) -> None:
    slow_client = ClientCredentials(
        client_id="slow-1", secret_hash=hash_secret("s", SLOW_ITERATIONS), roles=["registrar"]
    )
    app = create_gateway_app(gateway_settings(upstreams, clients=[slow_client]))
    longest_stall = 0.0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal longest_stall
        while not done.is_set():
            began = time.perf_counter()
            await asyncio.sleep(0.01)
            longest_stall = max(longest_stall, time.perf_counter() - began)

    async with app.router.lifespan_context(app), client_of(app) as client:
        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.05)  # the ticker is ticking
        began = time.perf_counter()
        issued = await client.post(
            "/auth/token", data=CREDENTIALS | {"client_id": "slow-1", "client_secret": "s"}
        )
        token_s = time.perf_counter() - began
        done.set()
        await ticker

    assert issued.status_code == 200, issued.text
    assert longest_stall < token_s / 4, f"the loop stalled {longest_stall:.2f}s of {token_s:.2f}s"


@pytest.mark.parametrize(  # every shape is checked in libs/common/tests/test_auth.py
    "claims",
    [
        {"roles": [["admin"]]},
        {"roles": "admin"},
        {"resource_access": {"amana": {"roles": {"admin": True}}}},
    ],
)
async def test_a_signed_token_with_odd_claim_shapes_is_401_not_500(
    gateway: httpx.AsyncClient, recorder: Recorder, claims: dict[str, Any]
) -> None:
    now = datetime.now(UTC)
    body = {
        "iss": "amana-dev",
        "aud": "amana",
        "sub": "odd",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "roles": ["registrar"],
    } | claims
    forged = jwt.encode(body, JWT_SECRET, algorithm="HS256")

    response = await gateway.get("/rec/echo/x", headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert recorder.requests == []
