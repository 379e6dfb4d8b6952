"""Paths the gateway refuses before routing: any an upstream could resolve to another path
than the one the gateway routed and authorised (`/providers/..%2Fmetrics` is `/metrics` to
the provider), or that carry control characters."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from amana_common.errors import problem_response

# In the path as sent: an encoded "/" or "\" makes one segment two once an upstream decodes it.
ENCODED_SEPARATOR = re.compile(rb"%(2f|5c)", re.IGNORECASE)
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def ambiguity(raw_path: bytes, path: str) -> str | None:
    """Why the path is refused, or None. `path` is the decoded form of `raw_path`."""
    if ENCODED_SEPARATOR.search(raw_path):
        return "an encoded / or \\ in the path"
    if "\\" in path:
        return "a \\ in the path"
    if "//" in path:
        return "an empty segment (//) in the path"
    if any(segment in (".", "..") for segment in path.split("/")):
        return "a . or .. segment in the path"
    if CONTROL_CHARACTER.search(path):
        return "a control character in the path"
    return None


class RefuseAmbiguousPaths:
    """400 problem+json for an ambiguous path, before any route sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            reason = ambiguity(scope.get("raw_path") or path.encode(), path)
            if reason is not None:
                response = problem_response(400, "ambiguous-path", f"refused: {reason}")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
