"""Gateway use cases: development tokens, one merged OpenAPI document, aggregated readiness."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx

from amana_common.auth import Role, issue_token
from amana_common.errors import HTTP_OPERATIONS, PROBLEM_JSON, Problem, ProblemDetails
from gateway.schemas import TokenResponse
from gateway.secrets import hash_secret, secret_matches
from gateway.settings import DEV_PROVIDER_ID, ClientCredentials, GatewaySettings, Route

OPERATIONS_PATHS = {"/healthz", "/readyz", "/metrics"}
GATEWAY_PROBLEMS = {
    "400": "Bad request: an ambiguous path, or a body on GET, HEAD or OPTIONS",
    "429": "Rate limited: too many requests, or too many at once; see Retry-After",
    "502": "Bad gateway: the service could not be reached",
    "504": "Gateway timeout: the service did not answer in time",
}
# A path parameter the gateway passes on: no / or \, no control character, not "." or "..",
# not empty (paths.py refuses the rest before routing).
_CHARACTER = r"[^/\\\u0000-\u001f\u007f]"
_NOT_DOT = r"[^./\\\u0000-\u001f\u007f]"
PATH_SEGMENT_PATTERN = rf"^(?:{_NOT_DOT}{_CHARACTER}*|\.{_NOT_DOT}{_CHARACTER}*|\.\.{_CHARACTER}+)$"
OPENAPI_CACHE_S = 30.0
UPSTREAM_CHECK_TIMEOUT_S = 3.0
DEV_SECRET_ITERATIONS = 1_000  # development secrets are published in the README anyway


def development_clients() -> list[ClientCredentials]:
    """One client per role, `<role>-dev` / `<role>-dev-secret`; development only."""
    return [
        ClientCredentials(
            client_id=f"{role.value.replace('_', '-')}-dev",
            secret_hash=hash_secret(
                f"{role.value.replace('_', '-')}-dev-secret", DEV_SECRET_ITERATIONS
            ),
            roles=[role],
            provider_id=DEV_PROVIDER_ID if role == Role.provider else None,
        )
        for role in Role
    ]


def invalid_client() -> Problem:
    return Problem(
        401,
        "invalid-client",
        "unknown client or wrong secret",
        headers={"WWW-Authenticate": 'Basic realm="amana"'},
    )


def client_credentials(
    content_type: str, body: bytes, authorization: str | None
) -> tuple[str, str]:
    """client_id and client_secret from HTTP Basic (RFC 6749 2.3.1), a form or a JSON body."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise invalid_client() from error
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    fields = _fields(content_type, body)
    if fields.get("grant_type") != "client_credentials":
        raise Problem(
            400,
            "unsupported-grant-type",
            "grant_type must be client_credentials",
            errors=[{"field": "grant_type", "message": "must be client_credentials"}],
        )
    return str(fields.get("client_id", "")), str(fields.get("client_secret", ""))


def _fields(content_type: str, body: bytes) -> dict[str, Any]:
    if content_type.startswith("application/json"):
        try:
            parsed = json.loads(body or b"{}")
        except ValueError as error:
            raise Problem(400, "malformed-json", "the body is not valid JSON") from error
        return parsed if isinstance(parsed, dict) else {}
    form = parse_qs(body.decode(errors="replace"), max_num_fields=10)
    return {key: values[0] for key, values in form.items()}


def issue_client_token(
    settings: GatewaySettings, clients: list[ClientCredentials], client_id: str, secret: str
) -> TokenResponse:
    client = next((c for c in clients if c.client_id == client_id), None)
    if client is None or not secret_matches(secret, client.secret_hash):
        raise invalid_client()
    lifetime = timedelta(seconds=settings.token_lifetime_s)
    token = issue_token(settings, client.client_id, client.roles, client.provider_id, lifetime)
    return TokenResponse(
        access_token=token,
        expires_in=settings.token_lifetime_s,
        scope=" ".join(sorted(role.value for role in client.roles)),
    )


async def upstream_readiness(
    settings: GatewaySettings, client: httpx.AsyncClient
) -> dict[str, Any]:
    services = {route.service: route for route in settings.deployed_routes()}
    states = await asyncio.gather(*(_ready(client, route) for route in services.values()))
    return {f"upstream:{name}": state for name, state in zip(services, states, strict=True)}


async def _ready(client: httpx.AsyncClient, route: Route) -> str:
    try:
        response = await client.get(f"{route.upstream}/readyz", timeout=UPSTREAM_CHECK_TIMEOUT_S)
    except httpx.HTTPError:
        return "unreachable"
    return "ok" if response.status_code == 200 else f"not ready ({response.status_code})"


class OpenApiMerger:
    """One document for every deployed service: their paths under the gateway's prefixes, their
    schemas namespaced by service (`registry.HouseholdOut`), one bearer security scheme."""

    def __init__(self, settings: GatewaySettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client
        self._cached: tuple[float, dict[str, Any]] | None = None

    async def document(self, own: dict[str, Any]) -> dict[str, Any]:
        if self._cached and time.monotonic() - self._cached[0] < OPENAPI_CACHE_S:
            return self._cached[1]
        routes = self.settings.deployed_routes()
        upstreams = sorted({route.upstream for route in routes})
        fetched = await asyncio.gather(*(self._fetch(upstream) for upstream in upstreams))
        by_upstream = dict(zip(upstreams, fetched, strict=True))
        upstream_docs = [by_upstream[route.upstream] for route in routes]
        merged = self._skeleton(own)
        missing: list[str] = []
        for route, doc in zip(routes, upstream_docs, strict=True):
            if doc is None:
                missing += [] if route.service in missing else [route.service]
                continue
            _merge(merged, route, doc)
        if missing:
            merged["info"]["x-unavailable-services"] = missing
        else:
            self._cached = (time.monotonic(), merged)
        return merged

    async def _fetch(self, upstream: str) -> dict[str, Any] | None:
        try:
            response = await self.client.get(
                f"{upstream}/openapi.json", timeout=UPSTREAM_CHECK_TIMEOUT_S
            )
            response.raise_for_status()
            document: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return document

    def _skeleton(self, own: dict[str, Any]) -> dict[str, Any]:
        paths = {p: item for p, item in own.get("paths", {}).items() if p not in OPERATIONS_PATHS}
        return {
            "openapi": own.get("openapi", "3.1.0"),
            "info": {
                "title": "Amana API",
                "version": own["info"]["version"],
                "description": "Every Amana service behind one gateway. Get a token from "
                "`POST /auth/token` (development) or your identity provider, then call the "
                "services under their prefixes with `Authorization: Bearer <token>`.",
            },
            "paths": paths,
            "components": {
                "schemas": {
                    "ProblemDetails": ProblemDetails.model_json_schema(),
                    **own.get("components", {}).get("schemas", {}),
                },
                "securitySchemes": {
                    "HTTPBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                },
            },
        }


def _merge(merged: dict[str, Any], route: Route, doc: dict[str, Any]) -> None:
    for path, item in doc.get("paths", {}).items():
        if path in OPERATIONS_PATHS or not path.startswith(route.upstream_prefix):
            continue
        public_path = route.prefix + path[len(route.upstream_prefix) :]
        merged["paths"][public_path] = _as_the_gateway_answers(_namespaced(item, route.service))
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        merged["components"]["schemas"][f"{route.service}.{name}"] = _namespaced(
            schema, route.service
        )


def _as_the_gateway_answers(item: dict[str, Any]) -> dict[str, Any]:
    """A service's path item as the gateway serves it: its operations may also be answered by
    the gateway itself (400, 429, 502, 504), and a path parameter holds what the gateway lets
    through (paths.py)."""
    for method, operation in item.items():
        if method not in HTTP_OPERATIONS:
            continue
        responses = operation.setdefault("responses", {})
        for status, description in GATEWAY_PROBLEMS.items():
            responses.setdefault(status, _problem_response(description))
        for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
            schema = parameter.get("schema", {})
            if parameter.get("in") == "path" and _free_text(schema):
                schema["pattern"] = PATH_SEGMENT_PATTERN
    return item


def _free_text(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and not {"pattern", "format", "enum"} & set(schema)


def _problem_response(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {"description": description, "content": {PROBLEM_JSON: {"schema": schema}}}


def documented_methods(document: dict[str, Any], path: str) -> list[str] | None:
    """The methods `document` lists for the path template `path` matches, or None when no
    documented path matches it."""
    for template, item in document.get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\{[^}/]+\\}", "[^/]+", re.escape(template)), path):
            return sorted(method.upper() for method in item if method in HTTP_OPERATIONS)
    return None


def _namespaced(node: Any, service: str) -> Any:
    """A copy of `node` whose schema references point at the service's namespaced names."""
    if isinstance(node, dict):
        return {
            key: (
                value.replace("#/components/schemas/", f"#/components/schemas/{service}.", 1)
                if key == "$ref" and isinstance(value, str)
                else _namespaced(value, service)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_namespaced(item, service) for item in node]
    return node
