"""Gateway routes: the development token endpoint, the merged API docs and the proxy."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from swagger_ui_bundle import swagger_ui_path

from amana_common.auth import POLICY_ATTRIBUTE, Principal, authenticate, bearer_scheme, public
from amana_common.errors import PROBLEM_RESPONSES, Problem
from gateway import service
from gateway.ratelimit import RateLimiter
from gateway.schemas import TokenResponse
from gateway.settings import GatewaySettings, Route

DOCS_ASSETS = "/docs/assets"
PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


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


def client_address(request: Request) -> str:
    return f"ip:{request.client.host if request.client else 'unknown'}"


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
        responses=PROBLEM_RESPONSES,
    )

    @router.post(
        "/auth/token",
        response_model=TokenResponse,
        summary="Development: a token for a configured client (OAuth2 client credentials)",
        description="Form (`grant_type=client_credentials&client_id=…&client_secret=…`), JSON "
        "with the same fields, or HTTP Basic with the client id and secret. Not served in "
        "production, where tokens come from the identity provider.",
    )
    async def token(request: Request) -> TokenResponse:
        rate_limit(request, client_address(request))
        client_id, secret = service.client_credentials(
            request.headers.get("content-type", ""),
            await request.body(),
            request.headers.get("authorization"),
        )
        settings: GatewaySettings = request.app.state.settings
        return service.issue_client_token(settings, request.app.state.clients, client_id, secret)

    return router


def gateway_policy(route: Route) -> Any:
    """Any valid token passes the gateway (each service enforces its own roles); the route's
    public paths (signed webhooks) pass without one. Clients are rate-limited by token subject,
    anonymous ones by address."""
    public_paths = [re.compile(pattern) for pattern in route.public_paths]

    async def policy(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
    ) -> Principal | None:
        rest = "/" + request.path_params.get("path", "")
        if any(pattern.match(rest) for pattern in public_paths):
            rate_limit(request, client_address(request))
            return None
        try:
            principal = await authenticate(request, credentials)
        except Problem:
            rate_limit(request, client_address(request))
            raise
        rate_limit(request, f"sub:{principal.subject}")
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


def _proxy_endpoint(route: Route) -> Any:
    async def forward(request: Request) -> Response:
        rest = request.url.path[len(route.prefix) :]
        response: Response = await request.app.state.proxy.forward(request, route, rest)
        return response

    return forward
