"""Every route of every service declares who may call it (OWASP API1/API5).

A route must carry `require(<roles>)` or `public(<reason>)` from amana_common.auth; the
documentation routes FastAPI adds are the only exceptions. New services are found on disk, so
a service added without policies fails here.
"""

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from amana_common.auth import route_policy

SERVICES = Path(__file__).resolve().parents[2] / "services"
DOCUMENTATION_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def fill_path(path: str) -> str:
    """A path template with a syntactically valid value in each parameter."""
    return re.sub(r"\{[^}]+\}", str(uuid4()), path)


def service_app_factories() -> dict[str, Callable[[], FastAPI]]:
    factories = {}
    for main in sorted(SERVICES.glob("*/src/*/main.py")):
        module = importlib.import_module(f"{main.parent.name}.main")
        name = f"create_{main.parent.name}_app"
        assert hasattr(module, name), f"{main} must define {name}()"
        factories[main.parent.name] = getattr(module, name)
    return factories


@pytest.fixture(autouse=True)
def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each app is built from its environment, which defaults to production: say test."""
    for main in SERVICES.glob("*/src/*/main.py"):
        monkeypatch.setenv(f"{main.parent.name.upper()}_ENVIRONMENT", "test")
    # The anonymous sweep asks the gateway once per route from one address, more than one
    # burst of its rate limit (checked before the token) now that every service is routed.
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_BURST", "100000")


def dependency_calls(dependant: Dependant) -> list[Any]:
    calls = [dependant.call]
    for sub in dependant.dependencies:
        calls.extend(dependency_calls(sub))
    return calls


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI keeps those as wrappers)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif (original := getattr(route, "original_router", None)) is not None:
            found.extend(api_routes(original.routes))
    return found


def unprotected_routes(app: FastAPI) -> list[str]:
    return [
        f"{sorted(route.methods or ())} {route.path}"
        for route in api_routes(app.routes)
        if route.path not in DOCUMENTATION_PATHS
        and route_policy(dependency_calls(route.dependant)) is None
    ]


def test_every_service_is_checked() -> None:
    assert {"registry", "provider", "gateway"} <= set(service_app_factories())


@pytest.mark.parametrize("service", sorted(service_app_factories()))
def test_every_route_has_a_policy(service: str) -> None:
    app = service_app_factories()[service]()

    assert len(api_routes(app.routes)) > 3, "the walk must find the service's routes"
    assert unprotected_routes(app) == []


@pytest.mark.parametrize("service", sorted(service_app_factories()))
async def test_every_protected_route_refuses_an_anonymous_call(service: str) -> None:
    app = service_app_factories()[service]()
    protected = [
        (method, route.path)
        for route in api_routes(app.routes)
        if not str(route_policy(dependency_calls(route.dependant))).startswith("public")
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for method, path in protected:
            response = await client.request(method, fill_path(path))
            assert response.status_code == 401, f"{service}: {method} {path} answered anonymously"


def test_a_route_without_a_policy_is_caught() -> None:
    from fastapi import APIRouter

    from amana_common.app import create_app
    from amana_common.settings import ServiceSettings

    router = APIRouter()

    @router.get("/open-by-mistake")
    async def open_by_mistake() -> dict[str, str]:
        return {}

    app = create_app(ServiceSettings(environment="test"), [router], title="t", uses_database=False)

    assert unprotected_routes(app) == ["['GET'] /open-by-mistake"]
