"""Who the client is: the gateway's own forwarding headers only, client addresses trusted only
from configured proxies, and the rate limit checked before any token is verified."""

import asyncio
from typing import Any

import httpx
import pytest

from amana_common.auth import TokenVerifier
from amana_common.cli import ApiServer
from amana_common.testing.clients import eventually, free_port
from gateway.main import create_gateway_app

from .conftest import CLIENT_ADDRESS, Recorder, client_of, gateway_client, gateway_settings
from .test_gateway import token

CLIENT_FORWARDING = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Prefix": "/evil",
    "X-Forwarded-Port": "6666",
    "X-Real-IP": "6.6.6.6",
    "Forwarded": "for=6.6.6.6;host=evil.example",
}


async def test_the_clients_forwarding_headers_never_reach_the_upstream(
    gateway: httpx.AsyncClient,
) -> None:
    headers = await token(gateway, "registrar-1", "s3cret!") | CLIENT_FORWARDING

    seen = (await gateway.get("/rec/echo/a", headers=headers)).json()["headers"]

    assert seen["x-forwarded-for"] == CLIENT_ADDRESS
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-prefix"] == "/rec"
    for name in ("forwarded", "x-real-ip", "x-forwarded-host", "x-forwarded-port"):
        assert name not in seen, name
    assert "6.6.6.6" not in str(seen) and "evil" not in str(seen)


async def anonymous_statuses(settings: Any, forwarded_for: list[str]) -> list[int]:
    statuses = []
    async for gateway in gateway_client(settings):
        for address in forwarded_for:
            response = await gateway.get("/rec/echo/r", headers={"X-Forwarded-For": address})
            statuses.append(response.status_code)
    return statuses


async def test_behind_a_trusted_proxy_each_client_address_has_its_own_bucket(
    upstreams: dict[str, str],
) -> None:
    limited = {"rate_limit_per_s": 0.01, "rate_limit_burst": 1}
    trusted = gateway_settings(upstreams, trusted_proxies=["203.0.113.0/24"], **limited)
    untrusted = gateway_settings(upstreams, **limited)
    callers = ["198.51.100.1", "198.51.100.2", "198.51.100.1"]

    assert await anonymous_statuses(trusted, callers) == [401, 401, 429]
    assert await anonymous_statuses(untrusted, callers) == [401, 429, 429]


async def test_the_address_behind_a_chain_of_trusted_proxies_is_forwarded(
    upstreams: dict[str, str],
) -> None:
    settings = gateway_settings(upstreams, trusted_proxies=["203.0.113.0/24", "10.0.0.0/8"])
    async for gateway in gateway_client(settings):
        headers = await token(gateway, "registrar-1", "s3cret!")
        chain = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.1.2.3"}
        seen = (await gateway.get("/rec/echo/a", headers=headers | chain)).json()["headers"]

    # 6.6.6.6 is what 198.51.100.7 claimed; only the trusted hops' reports count.
    assert seen["x-forwarded-for"] == "198.51.100.7"


async def test_the_rate_limit_is_checked_before_a_token_is_verified(
    upstreams: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = gateway_settings(upstreams, rate_limit_per_s=0.01, rate_limit_burst=2)
    decoded = 0
    real_decode = TokenVerifier._decode

    async def counting_decode(self: TokenVerifier, raw: str) -> Any:
        nonlocal decoded
        decoded += 1
        return await real_decode(self, raw)

    monkeypatch.setattr(TokenVerifier, "_decode", counting_decode)
    async for gateway in gateway_client(settings):
        statuses = [
            (
                await gateway.get("/rec/echo/r", headers={"Authorization": f"Bearer forged.{n}.x"})
            ).status_code
            for n in range(5)
        ]

    assert statuses == [401, 401, 429, 429, 429]
    assert decoded == 2, "a refused request must not cost a token verification"


async def test_the_gateway_server_ignores_forwarding_headers_from_loopback(
    upstreams: dict[str, str],
) -> None:
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 by default; the gateway trusts only
    GATEWAY_TRUSTED_PROXIES, so its server must not rewrite the client address first."""
    settings = gateway_settings(upstreams, rate_limit_per_s=0.01, rate_limit_burst=1)
    settings.port = free_port()
    server = ApiServer(create_gateway_app(settings), settings)
    stop = asyncio.Event()
    serving = asyncio.create_task(server.run(stop))
    try:
        await eventually(lambda: server.server.started, timeout_s=20, interval_s=0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}") as client:
            statuses = [
                (await client.get("/rec/echo/r", headers={"X-Forwarded-For": a})).status_code
                for a in ("198.51.100.1", "198.51.100.2")
            ]
    finally:
        stop.set()
        await asyncio.wait_for(serving, 20)

    assert statuses == [401, 429]


async def test_location_is_never_built_from_the_clients_host(
    upstreams: dict[str, str], recorder: Recorder
) -> None:
    relative = gateway_settings(upstreams)
    configured = gateway_settings(upstreams, public_base_url="https://api.amana.example")
    locations = []
    for settings in (relative, configured):
        app = create_gateway_app(settings)
        async with app.router.lifespan_context(app), client_of(app) as client:
            headers = await token(client, "registrar-1", "s3cret!") | {"Host": "evil.example"}
            response = await client.post("/rec/echo/x", content=b"{}", headers=headers)
            locations.append(response.headers["location"])

    assert locations == ["/rec/echo/created", "https://api.amana.example/rec/echo/created"]
