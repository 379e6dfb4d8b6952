"""RFC 9457 problem+json for every error, with a stable `type` per kind of problem."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amana_common.db import sqlstate
from amana_common.observability import request_id_var
from amana_common.validation import key_rules_as_property_names

log = logging.getLogger("amana.errors")

PROBLEM_JSON = "application/problem+json"
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired (or NOWAIT): another transaction holds it
# The request lost a race another transaction won, its transaction rolled back: running it
# again succeeds (lock timeout, deadlock detected, serialization failure).
TRY_AGAIN_SQLSTATES = frozenset({LOCK_NOT_AVAILABLE, "40P01", "40001"})
LOCK_RETRY_AFTER_S = 1
BUSY_RETRY_AFTER_S = 2
TYPE_BASE = "https://amana.dev/problems/"

_TITLES = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    412: "precondition-failed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    428: "precondition-required",
    429: "rate-limited",
    500: "internal-error",
    502: "bad-gateway",
    503: "unavailable",
    504: "gateway-timeout",
}


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, as every Amana error is answered."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    request_id: str | None = None


def problem_doc(description: str) -> dict[str, Any]:
    """An OpenAPI `responses` entry for a problem+json answer."""
    return {"model": ProblemDetails, "content": {PROBLEM_JSON: {}}, "description": description}


def _title(slug: str) -> str:
    return slug.replace("-", " ").capitalize()


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: problem_doc(_title(_TITLES[status])) for status in (400, 401, 403, 404, 413, 422)
}


HTTP_OPERATIONS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def document_shared_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Documents, on every operation of an OpenAPI document, the problems the shared machinery
    answers whatever the route: 400 (malformed request), 401 and 403 (a secured operation), 413,
    415 and 422 (a request body), 422 (parameters). A route need not list them itself. The rules
    of dict keys are stated as `propertyNames` (see `key_rules_as_property_names`)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ProblemDetails", ProblemDetails.model_json_schema())
    for schema in schemas.values():
        for node in schema.get("properties", {}).values():
            key_rules_as_property_names(node)
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method in HTTP_OPERATIONS:
                _document_problems(operation)
    return document


def _document_problems(operation: dict[str, Any]) -> None:
    statuses = [400]
    if operation.get("security"):
        statuses += [401, 403]
    if "requestBody" in operation:
        statuses += [413, 415, 422]
    if operation.get("parameters"):
        statuses += [422]
    responses = operation.setdefault("responses", {})
    for status in statuses:
        responses.setdefault(
            str(status),
            {
                "description": _title(_TITLES[status]),
                "content": {
                    PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
                },
            },
        )


_PRECONDITION_HEADERS: dict[str, str] = {}


def require_precondition_header(name: str, detail: str) -> None:
    """A request without the (required) header `name` is 428 Precondition Required (RFC 6585)
    with `detail`, not a 422: the client must make its request conditional."""
    _PRECONDITION_HEADERS[name.lower()] = detail


def _missing_precondition(error: RequestValidationError) -> str | None:
    """The 428 detail when a missing precondition header is all that is wrong (else the 422
    names every problem, that one among them)."""
    items = error.errors()
    if len(items) != 1:
        return None
    location = [str(part).lower() for part in items[0].get("loc", ())]
    if items[0].get("type") == "missing" and location[:1] == ["header"] and len(location) == 2:
        return _PRECONDITION_HEADERS.get(location[1])
    return None


class Problem(Exception):
    """A domain or request error rendered as problem+json."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or _title(slug)
        self.errors = errors
        self.headers = headers or {}


def field_problem(
    field: str, message: str, slug: str = "validation-error", status: int = 422
) -> Problem:
    return Problem(status, slug, message, errors=[{"field": field, "message": message}])


def problem_response(
    status: int,
    slug: str,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title or _title(slug),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    if request_id := request_id_var.get():
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ())]
        source = location[0] if location else "body"
        field = ".".join(location[1:]) or source
        out.append({"field": field, "in": source, "message": item.get("msg", "invalid")})
    return out


class UnexpectedErrorMiddleware:
    """Renders an unhandled exception as a 500 problem+json while the request context (request
    id, traceparent) is still set, so the answer and the error log carry them. Starlette's own
    handler for `Exception` runs outside every middleware, after that context is gone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            response = problem_response(
                500, "internal-error", "An unexpected error occurred.", instance=scope.get("path")
            )
            await response(scope, receive, send)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route of `app` serves at the request's path. Starlette's 405 names
    only the methods of the first route matching the path, though a path often has several
    (`GET` and `POST /households`), and RFC 9110 15.5.6 asks for all of them in `Allow`."""
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**scope, "method": method})[0] == Match.FULL
            for route in app.router.routes
        )
    ]


def _retry_later(
    request: Request, status: int, slug: str, detail: str, after_s: int
) -> JSONResponse:
    """A problem the same request may retry as is, after `after_s` seconds (`Retry-After`)."""
    return problem_response(
        status,
        slug,
        detail,
        title=_title(slug),
        headers={"Retry-After": str(after_s)},
        instance=request.url.path,
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(
            exc.status,
            exc.slug,
            exc.detail,
            title=exc.title,
            errors=exc.errors,
            headers=exc.headers,
            instance=request.url.path,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if (missing := _missing_precondition(exc)) is not None:
            return problem_response(
                428, "precondition-required", missing, instance=request.url.path
            )
        errors = validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        if any(item.get("type") == "json_invalid" for item in exc.errors()):
            return problem_response(
                400,
                "malformed-json",
                f"The request body is not valid JSON: {detail}",
                errors=errors,
                instance=request.url.path,
            )
        return problem_response(
            422, "validation-error", detail, errors=errors, instance=request.url.path
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug = _TITLES.get(exc.status_code, "error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope))
        return problem_response(
            exc.status_code, slug, str(exc.detail), headers=headers, instance=request.url.path
        )

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DBAPIError)
        if sqlstate(exc) not in TRY_AGAIN_SQLSTATES:
            raise exc
        detail = "Another request is changing the same data; try again shortly."
        return _retry_later(request, 409, "try-again", detail, LOCK_RETRY_AFTER_S)

    async def on_pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
        log.warning(
            "no database connection free for %s %s within the pool timeout: overloaded",
            request.method,
            request.url.path,
        )
        detail = "The service is busy; try again shortly."
        return _retry_later(request, 503, "busy", detail, BUSY_RETRY_AFTER_S)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal-error", "An unexpected error occurred.")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(PoolTimeout, on_pool_exhausted)
    app.add_exception_handler(Exception, on_unexpected)
