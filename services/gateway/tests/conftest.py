"""The gateway in front of real servers on loopback: the registry (with its own database) and a
recording upstream that answers what it received, so a test can tell what reached an upstream."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from amana_common.auth import public
from amana_common.testing.clients import serving
from amana_common.testing.plugin import MigratedDatabase
from gateway.main import create_gateway_app
from gateway.secrets import hash_secret
from gateway.settings import ClientCredentials, GatewaySettings, Route
from registry.main import create_registry_app
from registry.settings import RegistrySettings

REPO = Path(__file__).resolve().parents[3]
JWT_SECRET = secrets.token_urlsafe(32)  # generated: a secret in the repository is refused
CLOSED_PORT = 1


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []


def recording_app(recorder: Recorder) -> FastAPI:
    app = FastAPI()
    router = APIRouter(dependencies=[public("a test upstream")])

    @router.api_route(
        "/echo/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False
    )
    async def echo(request: Request, rest: str) -> JSONResponse:
        body = await request.body()
        recorder.requests.append({"path": request.url.path, "size": len(body)})
        return JSONResponse(
            {
                "path": request.url.path,
                "query": request.url.query,
                "size": len(body),
                "headers": dict(request.headers),
            },
            headers={"Location": f"{request.base_url}echo/created"},
        )

    @router.api_route(
        "/plain/{rest:path}", methods=["GET", "HEAD", "OPTIONS"], include_in_schema=False
    )
    async def plain(request: Request, rest: str) -> JSONResponse:
        """Answers without reading a body, as any GET handler does."""
        recorder.requests.append({"path": request.url.path})
        return JSONResponse({"path": request.url.path})

    @router.get("/metrics")
    @router.get("/healthz")
    async def operations(request: Request) -> JSONResponse:
        recorder.requests.append({"path": request.url.path})
        return JSONResponse({"operations": True})

    @router.get("/slow")
    async def slow() -> JSONResponse:
        recorder.requests.append({"path": "/slow"})
        await asyncio.sleep(3)
        return JSONResponse({})

    @router.get("/big")
    async def big() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"x" * 65536

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        return JSONResponse({"status": "ready"})

    app.include_router(router)
    return app


@pytest.fixture(scope="session")
async def registry_url(migrated_database: MigratedDatabase) -> str:
    return await migrated_database("registry", REPO / "services" / "registry", "gateway")


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def upstreams(
    registry_url: str, kafka_bootstrap: str, recorder: Recorder
) -> AsyncIterator[dict[str, str]]:
    registry_settings = RegistrySettings(
        database_url=registry_url,
        kafka_bootstrap=kafka_bootstrap,
        environment="test",
        jwt_secret=JWT_SECRET,
    )
    async with (
        serving(create_registry_app(registry_settings)) as registry,
        serving(recording_app(recorder)) as recording,
    ):
        yield {"registry": registry, "recording": recording}


def gateway_settings(upstreams: dict[str, str], **overrides: Any) -> GatewaySettings:
    routes = [
        Route(prefix="/registry", service="registry", upstream=upstreams["registry"]),
        Route(
            prefix="/rec",
            service="recording",
            upstream=upstreams["recording"],
            max_body_bytes=64 * 1024,
            timeout_s=1,
            public_paths=[r"^/echo/webhooks/.*", r"^/echo/callbacks/[a-z0-9-]+"],
        ),
        Route(
            prefix="/bulk",
            service="bulk",
            upstream=upstreams["recording"],
            upstream_prefix="/echo",
            max_body_bytes=32 * 1024 * 1024,
        ),
        Route(prefix="/gone", service="gone", upstream=f"http://127.0.0.1:{CLOSED_PORT}"),
    ]
    values: dict[str, Any] = {
        "environment": "test",
        "jwt_secret": JWT_SECRET,
        "dev_token_endpoint": True,
        "routes": routes,
        "clients": [
            ClientCredentials(
                client_id="registrar-1",
                secret_hash=hash_secret("s3cret!", 1000),
                roles=["registrar"],
            ),
            ClientCredentials(
                client_id="analyst-1", secret_hash=hash_secret("an4lyst", 1000), roles=["analyst"]
            ),
        ],
        "rate_limit_per_s": 1000,
        "rate_limit_burst": 1000,
        "cors_origins": ["https://ops.example.org"],
    }
    return GatewaySettings(**(values | overrides))


CLIENT_ADDRESS = "203.0.113.7"


@asynccontextmanager
async def client_of(
    app: FastAPI, address: str = CLIENT_ADDRESS
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the gateway `app` in-process, calling from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


async def gateway_client(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_gateway_app(settings)
    async with app.router.lifespan_context(app), client_of(app) as client:
        yield client


@pytest.fixture
async def gateway(upstreams: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in gateway_client(gateway_settings(upstreams)):
        yield client
