"""Audit records: one structured log line (`logger: amana.audit`) for every mutating request and
for every read of a route marked `audited_read(kind)` (reads of personal data), with no
personal data in it.

Fields: `service`; `action` (`write` or `read`); `principal` (token subject); `role` (the role
that authorised the call: the first of the route policy's roles that the principal holds, in
the policy's alphabetical order; none when the call was refused); `method`; `route` (the
template); `target` (path parameters, or the id in the `Location` of a create); `outcome`
(status code); `client` (the direct peer's address: the gateway, behind it) and
`forwarded_for` (the `X-Forwarded-For` chain as received, which only the gateway should set;
the services trust neither); the request id (added by the JSON log formatter). A read adds
`read`: the kind, the ids of the objects answered, their count and the filters the marker
names. Bodies, names and identifiers are never logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Depends
from fastapi.dependencies.models import Dependant
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amana_common.auth import Principal, route_policy

log = logging.getLogger("amana.audit")

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDITED_READ_ATTRIBUTE = "__amana_audited_read__"
MAX_FORWARDED_HOPS = 20
MAX_VALUE_LENGTH = 100


@dataclass(frozen=True)
class AuditedRead:
    kind: str
    filters: tuple[str, ...]


def audited_read(kind: str, filters: tuple[str, ...] = ()) -> Any:
    """Marks a route that reads personal data: each request leaves an audit record with the
    ids it answered (`id` of the object, or of each of a page's `items`) and the values of
    the query parameters named in `filters` (never free text a client may fill with names).

        @router.get("/households", dependencies=[READ, audited_read("household", ("status",))])
    """

    def marker() -> None:
        return None

    setattr(marker, AUDITED_READ_ATTRIBUTE, AuditedRead(kind, filters))
    return Depends(marker)


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _dependency_calls(sub)


@dataclass(frozen=True)
class _RouteAudit:
    policy_roles: tuple[str, ...]
    read: AuditedRead | None


class AuditMiddleware:
    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self._routes: dict[int, _RouteAudit] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        outcome: dict[str, Any] = {"status": 500, "location": None, "body": []}

        async def observing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                headers = dict(message.get("headers", []))
                location = headers.get(b"location")
                outcome["location"] = location.decode() if location else None
            elif message["type"] == "http.response.body" and self._route_audit(scope).read:
                outcome["body"].append(message.get("body", b""))  # bounded: pages, one object
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            read = self._route_audit(scope).read
            if scope["method"] in MUTATING_METHODS or read is not None:
                log.info("audit", extra={"audit": self._record(scope, outcome, read)})

    def _route_audit(self, scope: Scope) -> _RouteAudit:
        """The route's policy roles and read marker, found once per route."""
        route = scope.get("route")
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            return _RouteAudit((), None)
        if id(route) not in self._routes:
            calls = list(_dependency_calls(dependant))
            policy = route_policy(calls)
            marks = [getattr(call, AUDITED_READ_ATTRIBUTE, None) for call in calls]
            self._routes[id(route)] = _RouteAudit(
                tuple(policy) if isinstance(policy, list) else (),
                next((mark for mark in marks if mark is not None), None),
            )
        return self._routes[id(route)]

    def _record(
        self, scope: Scope, outcome: dict[str, Any], read: AuditedRead | None
    ) -> dict[str, Any]:
        principal: Principal | None = scope.get("state", {}).get("principal")
        route = scope.get("route")
        record = {
            "service": self.service,
            "action": "write" if scope["method"] in MUTATING_METHODS else "read",
            "principal": principal.subject if principal else None,
            "role": self._authorising_role(scope, principal, outcome["status"]),
            "method": scope["method"],
            "route": getattr(route, "path", None) or "unmatched",
            "target": _target(scope, outcome["location"]),
            "outcome": outcome["status"],
            "client": (scope.get("client") or (None,))[0],
            "forwarded_for": _forwarded_for(scope),
        }
        if read is not None:
            record["read"] = _read(scope, read, b"".join(outcome["body"]), outcome["status"])
        return record

    def _authorising_role(
        self, scope: Scope, principal: Principal | None, status: int
    ) -> str | None:
        if principal is None or status in (401, 403):
            return None
        held = [role for role in self._route_audit(scope).policy_roles if role in principal.roles]
        return held[0] if held else None


def _target(scope: Scope, location: str | None) -> str | None:
    parameters = scope.get("path_params") or {}
    if parameters:
        return ",".join(str(value) for value in parameters.values())
    if location:
        return location.rstrip("/").rsplit("/", 1)[-1]
    return None


def _forwarded_for(scope: Scope) -> list[str]:
    """The X-Forwarded-For chain as sent, bounded: it is whatever the caller wrote."""
    values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
    hops = [hop.strip() for value in values for hop in value.split(",") if hop.strip()]
    return [hop[:MAX_VALUE_LENGTH] for hop in hops[:MAX_FORWARDED_HOPS]]


def _read(scope: Scope, read: AuditedRead, body: bytes, status: int) -> dict[str, Any]:
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    ids = _answered_ids(body) if 200 <= status < 300 else []
    return {
        "kind": read.kind,
        "ids": ids,
        "count": len(ids),
        "filters": {name: query[name][:MAX_VALUE_LENGTH] for name in read.filters if name in query},
    }


def _answered_ids(body: bytes) -> list[str]:
    """`id` of a JSON object answered, or of each of the `items` of a page."""
    try:
        answer = json.loads(body)
    except ValueError:
        return []
    if not isinstance(answer, dict):
        return []
    items = answer["items"] if isinstance(answer.get("items"), list) else [answer]
    return [str(item["id"]) for item in items if isinstance(item, dict) and "id" in item]
