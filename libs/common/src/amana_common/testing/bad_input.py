"""Sweeps of bad text over a service's HTTP API: every string field of every request body,
every string query parameter and every string header a route declares gets each character
that text fields refuse, and must answer 422 naming the field (`amana_common.validation`).

A service's test lists one `BodyRequest` per route with a body, with valid examples that
together hold every string field of the model; `uncovered` says what they miss and
`routes_with_bodies` which routes have bodies, so a new field or route without an example
fails the sweep instead of escaping it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter

from amana_common.testing.service import api_routes

BAD_CHARACTERS: dict[str, str] = {
    "NUL": "\x00",
    "U+0001": "\x01",
    "DEL": "\x7f",
    "NEL U+0085": "\x85",
    "LINE SEPARATOR U+2028": "\u2028",
    "lone surrogate U+D800": "\ud800",
}
# A URL or header cannot carry a lone surrogate: its UTF-8 bytes are sent instead, which the
# server decodes to other characters (refused too, as C1 controls or by the field's pattern).


@dataclass(frozen=True)
class BodyRequest:
    """A route with a body: `examples` are valid bodies, `path` fills the route's template."""

    method: str
    route: str
    model: type[BaseModel]
    examples: list[dict[str, Any]]
    path: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.route.format(**self.path)


def routes_with_bodies(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method, route.path_format)
        for route in api_routes(app)
        if route.body_field is not None
        for method in route.methods or ()
    }


def string_fields(model: type[BaseModel]) -> set[str]:
    """Dotted paths of every string in the model's JSON form (list items as `.0`)."""
    schema = model.model_json_schema()
    return set(_strings(schema, schema.get("$defs", {}), ""))


def _strings(node: dict[str, Any], defs: dict[str, Any], path: str) -> Iterator[str]:
    if "$ref" in node:
        yield from _strings(defs[node["$ref"].rsplit("/", 1)[-1]], defs, path)
    for option in [*node.get("anyOf", []), *node.get("oneOf", []), *node.get("allOf", [])]:
        yield from _strings(option, defs, path)
    kind = node.get("type")
    if kind == "string":
        yield path
    elif kind == "object":
        for name, sub in node.get("properties", {}).items():
            yield from _strings(sub, defs, f"{path}.{name}".lstrip("."))
    elif kind == "array" and "items" in node:
        yield from _strings(node["items"], defs, f"{path}.0".lstrip("."))


def _value_at(body: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(body, list) and part.isdigit() and int(part) < len(body):
            body = body[int(part)]
        elif isinstance(body, dict) and part in body:
            body = body[part]
        else:
            return None
    return body


def _with_value(body: dict[str, Any], path: str, value: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    *parents, last = path.split(".")
    target: Any = changed
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return changed


def uncovered(request: BodyRequest) -> set[str]:
    """The string fields of the model that none of the examples holds."""
    return {
        path
        for path in string_fields(request.model)
        if all(not isinstance(_value_at(example, path), str) for example in request.examples)
    }


def _spoiled(valid: str, character: str) -> str:
    middle = len(valid) // 2  # inside the value: trimming cannot hide it
    return valid[:middle] + character + valid[middle:]


def _refused_naming(response: httpx.Response, name: str) -> bool:
    if response.status_code != 422:
        return False
    return name in [error.get("field") for error in response.json().get("errors", [])]


def _failure(what: str, character: str, response: httpx.Response) -> str:
    return f"{what} with {character}: {response.status_code} {response.text[:200]}"


async def body_failures(client: httpx.AsyncClient, request: BodyRequest) -> list[str]:
    """Each string field, spoiled with each bad character in turn, must be a 422 naming it."""
    failures: list[str] = []
    for path in sorted(string_fields(request.model)):
        example = next(e for e in request.examples if isinstance(_value_at(e, path), str))
        for name, character in BAD_CHARACTERS.items():
            body = _with_value(example, path, _spoiled(_value_at(example, path), character))
            response = await client.request(
                request.method,
                request.url,
                content=json.dumps(body).encode(),  # ASCII escapes carry a lone surrogate
                headers={"content-type": "application/json", **request.headers},
            )
            if not _refused_naming(response, path):
                failures.append(_failure(f"{request.method} {request.url} {path}", name, response))
    return failures


def _takes_text(annotation: Any) -> bool:
    schema = TypeAdapter(annotation).json_schema()  # an enum comes as a $ref to its $defs
    return bool(set(_strings(schema, schema.get("$defs", {}), "value")))


def _string_params(route: APIRoute, kind: type[params.Param]) -> list[str]:
    """The aliases of the route's query or header parameters that take text."""
    return [
        param.alias
        for param in get_flat_params(route.dependant)
        if isinstance(param.field_info, kind) and _takes_text(param.field_info.annotation)
    ]


def query_parameters(app: FastAPI) -> dict[str, list[str]]:
    """Route template -> the string query parameters of its GET."""
    found = {
        route.path_format: _string_params(route, params.Query)
        for route in api_routes(app)
        if "GET" in (route.methods or ())
    }
    return {route: names for route, names in found.items() if names}


async def query_failures(
    client: httpx.AsyncClient, url: str, names: list[str], examples: dict[str, str]
) -> list[str]:
    failures: list[str] = []
    for name in names:
        for label, character in BAD_CHARACTERS.items():
            value = _spoiled(examples[name], character).encode("utf-8", "surrogatepass")
            response = await client.get(f"{url}?{name}={quote(value, safe='')}")
            if not _refused_naming(response, name):
                failures.append(_failure(f"GET {url}?{name}", label, response))
    return failures


def header_parameters(app: FastAPI, request: BodyRequest) -> list[str]:
    """The string headers the request's route declares."""
    route = next(
        route
        for route in api_routes(app)
        if route.path_format == request.route and request.method in (route.methods or ())
    )
    return _string_params(route, params.Header)


async def header_failures(
    client: httpx.AsyncClient, request: BodyRequest, names: list[str]
) -> list[str]:
    """Each named header, spoiled with each bad character (as the UTF-8 bytes a client would
    send; the server reads header bytes as Latin-1), must be a 422 naming it."""
    failures: list[str] = []
    for name in names:
        others = [
            (key.encode(), value.encode())
            for key, value in request.headers.items()
            if key.lower() != name.lower()
        ]
        for label, character in BAD_CHARACTERS.items():
            valid = request.headers.get(name, "valid-value")
            raw = _spoiled(valid, character).encode("utf-8", "surrogatepass")
            response = await client.request(
                request.method,
                request.url,
                content=json.dumps(request.examples[0]).encode(),
                headers=[(b"content-type", b"application/json"), *others, (name.encode(), raw)],
            )
            if not _refused_naming(response, name):
                failures.append(_failure(f"{request.method} {request.url} {name}", label, response))
    return failures


def coverage_gaps(
    app: FastAPI, requests: list[BodyRequest], query_examples: dict[str, str]
) -> list[str]:
    """What a sweep of `requests` and `query_examples` would miss in `app`; empty when none."""
    gaps = [
        f"{method} {route}: no BodyRequest"
        for method, route in sorted(
            routes_with_bodies(app) - {(r.method, r.route) for r in requests}
        )
    ]
    gaps += [
        f"{r.method} {r.route}: no example holds {path}" for r in requests for path in uncovered(r)
    ]
    gaps += [
        f"GET {route}: no example for {name}"
        for route, names in query_parameters(app).items()
        for name in names
        if name not in query_examples
    ]
    gaps += [
        f"{r.method} {r.route}: no valid value for header {name}"
        for r in requests
        for name in header_parameters(app, r)
        if name not in r.headers
    ]
    return gaps


async def sweep_failures(
    client: httpx.AsyncClient,
    app: FastAPI,
    requests: list[BodyRequest],
    query_examples: dict[str, str],
    path: dict[str, str] | None = None,
) -> list[str]:
    """Every body field, query parameter and header of `app` with every bad character; the
    answers that were not a 422 naming the field."""
    failures: list[str] = []
    for request in requests:
        failures += await body_failures(client, request)
        failures += await header_failures(client, request, header_parameters(app, request))
    for route, names in query_parameters(app).items():
        failures += await query_failures(
            client, route.format(**(path or {})), names, query_examples
        )
    return failures
