"""Gateway routes: the development token endpoint, the merged API docs and the proxy."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from swagger_ui_bundle import swagger_ui_path

from amana_common.auth import (
    POLICY_ATTRIBUTE,
    Principal,
    TokenVerifier,
    authenticate,
    bearer_scheme,
    public,
)
from amana_common.errors import PROBLEM_RESPONSES, Problem, problem_doc
from gateway import service
from gateway.addresses import client_address
from gateway.proxy import (
    METHODS_WITHOUT_BODY,
    BodyRefused,
    UpstreamProxy,
    bounded,
    carries_body,
    declared_length,
    too_large,
)
from gateway.ratelimit import InFlightLimiter, RateLimiter
from gateway.schemas import TokenResponse
from gateway.settings import GatewaySettings, Route

DOCS_ASSETS = "/docs/assets"
PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
TOKEN_REQUEST_MAX_BYTES = 4096  # a client id and secret, form- or JSON-encoded
TOKEN_REQUEST = {
    "type": "object",
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
    },
    "required": ["grant_type"],
}


def rate_limit(request: Request, client: str) -> None:
    limiter: RateLimiter = request.app.state.rate_limiter
    wait_s = limiter.take(client)
    if wait_s > 0:
        raise Problem(
            429,
            "rate-limited",
            "too many requests: slow down",
            headers={"Retry-After": limiter.retry_after_header(wait_s)},
        )


def caller_address(request: Request) -> str:
    """The caller's address, believed from X-Forwarded-For only behind a trusted proxy."""
    settings: GatewaySettings = request.app.state.settings
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies)


def mount_docs_assets(app: FastAPI) -> None:
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")


def docs_router() -> APIRouter:
    router = APIRouter(tags=["gateway"], dependencies=[public("API documentation")])

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        app: FastAPI = request.app
        return JSONResponse(await app.state.openapi_merger.document(app.openapi()))

    @router.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        # Served from the gateway itself: operators' networks often cannot reach a CDN.
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Amana API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )

    return router


def token_router() -> APIRouter:
    router = APIRouter(
        tags=["authentication"],
        dependencies=[public("clients obtain their token here")],
        responses={**PROBLEM_RESPONSES, 429: problem_doc("Rate limited: see Retry-After")},
    )

    @router.post(
        "/auth/token",
        response_model=TokenResponse,
        summary="Development: a token for a configured client (OAuth2 client credentials)",
        description="Form (`grant_type=client_credentials&client_id=…&client_secret=…`), JSON "
        "with the same fields, or HTTP Basic with the client id and secret; at most 4 KiB. "
        "Served only with GATEWAY_DEV_TOKEN_ENDPOINT=true, never in production, where tokens "
        "come from the identity provider.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {"schema": TOKEN_REQUEST},
                    "application/json": {"schema": TOKEN_REQUEST},
                },
            }
        },
    )
    async def token(request: Request) -> TokenResponse:
        rate_limit(request, f"ip:{caller_address(request)}")
        client_id, secret = service.client_credentials(
            request.headers.get("content-type", ""),
            await token_request_body(request),
            request.headers.get("authorization"),
        )
        settings: GatewaySettings = request.app.state.settings
        # PBKDF2 is deliberately slow: off the event loop, which serves everyone meanwhile.
        return await asyncio.to_thread(
            service.issue_client_token, settings, request.app.state.clients, client_id, secret
        )

    return router


async def token_request_body(request: Request) -> bytes:
    declared = declared_length(request)
    if declared is not None and declared > TOKEN_REQUEST_MAX_BYTES:
        raise too_large(TOKEN_REQUEST_MAX_BYTES)
    settings: GatewaySettings = request.app.state.settings
    chunks = bounded(request.stream(), TOKEN_REQUEST_MAX_BYTES, settings.body_idle_timeout_s)
    try:
        return b"".join([chunk async for chunk in chunks])
    except BodyRefused as refused:
        raise refused.problem from None


def gateway_policy(route: Route) -> Any:
    """Any valid token passes the gateway (each service enforces its own roles); the route's
    public paths (signed webhooks) pass without one. Clients are rate-limited by token subject,
    anonymous ones by address; a token not verified lately costs its caller's address a
    request before it is verified, so forged tokens cannot make the gateway verify at will."""
    public_paths = [re.compile(pattern) for pattern in route.public_paths]

    async def policy(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
    ) -> Principal | None:
        address = caller_address(request)
        request.state.client_address = address
        rest = "/" + request.path_params.get("path", "")
        if any(pattern.fullmatch(rest) for pattern in public_paths):
            rate_limit(request, f"ip:{address}")
            request.state.client_key = f"ip:{address}"
            return None
        verifier: TokenVerifier = request.app.state.token_verifier
        principal = verifier.cached(credentials.credentials) if credentials else None
        if principal is None:
            rate_limit(request, f"ip:{address}")
            principal = await authenticate(request, credentials)
        request.state.principal = principal
        request.state.client_key = f"sub:{principal.subject}"
        rate_limit(request, request.state.client_key)
        return principal

    setattr(policy, POLICY_ATTRIBUTE, "a valid token; the service enforces its roles")
    return Depends(policy)


def proxy_router(settings: GatewaySettings) -> APIRouter:
    router = APIRouter()
    for route in settings.deployed_routes():
        endpoint = _proxy_endpoint(route)
        for path in (route.prefix, route.prefix + "/{path:path}"):
            router.add_api_route(
                path,
                endpoint,
                methods=PROXIED_METHODS,
                dependencies=[gateway_policy(route)],
                include_in_schema=False,
                name=f"proxy:{route.service}:{path}",
            )
    return router


async def refuse_unserved_method(request: Request) -> None:
    """A GET, HEAD or OPTIONS with a body is refused (400, proxy.py), unless no service serves
    that method at that path at all: then 405 with `Allow`, as the service itself would say."""
    merger: service.OpenApiMerger = request.app.state.openapi_merger
    document = await merger.document(request.app.openapi())
    allowed = service.documented_methods(document, request.scope["path"])
    if allowed is not None and request.method not in allowed:
        raise Problem(
            405,
            "method-not-allowed",
            f"{request.method} is not served at this path",
            headers={"Allow": ", ".join(allowed)},
        )


def _proxy_endpoint(route: Route) -> Any:
    async def forward(request: Request) -> Response:
        if request.method in METHODS_WITHOUT_BODY and carries_body(request):
            await refuse_unserved_method(request)
        in_flight: InFlightLimiter = request.app.state.in_flight
        leave = in_flight.enter(request.state.client_key)
        if leave is None:
            raise Problem(
                429,
                "too-many-concurrent-requests",
                f"at most {in_flight.limit} requests at once: wait for one to finish",
                headers={"Retry-After": "1"},
            )
        proxy: UpstreamProxy = request.app.state.proxy
        rest = request.scope["path"][len(route.prefix) :]  # decoded; request.url re-encodes ?
        return await proxy.forward(request, route, rest, request.state.client_address, leave)

    return forward
