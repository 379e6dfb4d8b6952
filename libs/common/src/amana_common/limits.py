"""Request body size limit: 413 problem+json before the route sees an oversized body."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amana_common.errors import problem_response


class BodySizeLimitMiddleware:
    """Rejects a declared Content-Length over the limit at once; a body without one (chunked)
    is read up to the limit first, so the route never sees a partial oversized body.
    `streamed_paths` are path prefixes whose routes stream their body and bound it themselves
    (a bulk upload): they are passed through untouched."""

    def __init__(self, app: ASGIApp, max_bytes: int, streamed_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed_paths = streamed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            self.streamed_paths and str(scope.get("path", "")).startswith(self.streamed_paths)
        ):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        messages = await self._read_bounded(receive)
        if messages is None:
            await self._reject(scope, receive, send)
            return
        await self.app(scope, _replay(messages, receive), send)

    async def _read_bounded(self, receive: Receive) -> list[Message] | None:
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return messages

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body exceeds the limit of {self.max_bytes} bytes"
        await problem_response(413, "payload-too-large", detail)(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replaying_receive() -> Message:
        return pending.pop(0) if pending else await receive()

    return replaying_receive
