"""Audit records: one structured log line for every mutating request, with no personal data.

Fields: principal (token subject), role, method, route template, target id (path parameters,
or the id in the Location header of a create), outcome (status code), request id (added by
the JSON log formatter). Bodies, names and identifiers are never logged.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amana_common.auth import Principal

log = logging.getLogger("amana.audit")

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuditMiddleware:
    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING_METHODS:
            await self.app(scope, receive, send)
            return
        outcome: dict[str, Any] = {"status": 500, "location": None}

        async def observing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                headers = dict(message.get("headers", []))
                location = headers.get(b"location")
                outcome["location"] = location.decode() if location else None
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            log.info("audit", extra={"audit": self._record(scope, outcome)})

    def _record(self, scope: Scope, outcome: dict[str, Any]) -> dict[str, Any]:
        principal: Principal | None = scope.get("state", {}).get("principal")
        route = scope.get("route")
        return {
            "service": self.service,
            "principal": principal.subject if principal else None,
            "role": principal.primary_role() if principal else None,
            "method": scope["method"],
            "route": getattr(route, "path", None) or "unmatched",
            "target": _target(scope, outcome["location"]),
            "outcome": outcome["status"],
        }


def _target(scope: Scope, location: str | None) -> str | None:
    parameters = scope.get("path_params") or {}
    if parameters:
        return ",".join(str(value) for value in parameters.values())
    if location:
        return location.rstrip("/").rsplit("/", 1)[-1]
    return None
