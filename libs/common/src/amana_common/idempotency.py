"""`Idempotency-Key` for POSTs that create: the same key and body replay the stored response,
the same key with another body is 422. The key row is written in the request's own
transaction, so a failed request leaves no key behind and a concurrent duplicate waits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from amana_common.db import SessionDep
from amana_common.errors import Problem
from amana_common.tables import idempotency_keys
from amana_common.validation import Text

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEPT_HEADERS = ("location", "etag", "content-type")


class Idempotency:
    def __init__(self, request: Request, session: AsyncSession, key: str | None) -> None:
        self.request = request
        self.session = session
        self.key = key

    async def run(self, produce: Callable[[], Awaitable[JSONResponse]]) -> Response:
        key = self.key
        if key is None:
            return await produce()
        scope = self._scope()
        request_hash = await self._request_hash()
        claimed = await self.session.scalar(
            insert(idempotency_keys)
            .values(scope=scope, key=key, request_hash=request_hash)
            .on_conflict_do_nothing()
            .returning(idempotency_keys.c.key)
        )
        if claimed is None:
            return await self._replay(scope, key, request_hash)
        response = await produce()
        await self._store(scope, key, response)
        return response

    def _scope(self) -> str:
        principal = getattr(self.request.state, "principal", None)
        subject = getattr(principal, "subject", "anonymous")
        return f"{subject}:{self.request.method}:{self.request.url.path}"[:200]

    async def _request_hash(self) -> str:
        body = await self.request.body()
        try:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            canonical = body
        return hashlib.sha256(canonical).hexdigest()

    async def _store(self, scope: str, key: str, response: JSONResponse) -> None:
        headers = {k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS}
        await self.session.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
            .values(
                status_code=response.status_code,
                response_headers=headers,
                response_body=bytes(response.body),
            )
        )

    async def _replay(self, scope: str, key: str, request_hash: str) -> Response:
        row = (
            await self.session.execute(
                select(idempotency_keys).where(
                    idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
                )
            )
        ).one()
        if row.request_hash != request_hash:
            raise Problem(
                422,
                "idempotency-key-reused",
                f"{HEADER} was already used with a different request body",
            )
        if row.status_code is None:
            raise Problem(
                409, "idempotency-key-in-progress", "A request with this key is in progress"
            )
        headers = dict(row.response_headers or {}) | {REPLAYED_HEADER: "true"}
        return Response(row.response_body, status_code=row.status_code, headers=headers)


IdempotencyKeyHeader = Annotated[
    Annotated[str, Text(pattern=KEY_PATTERN, strip=False)] | None,
    Header(alias=HEADER, description="1-200 visible ASCII characters; a retry sends the same"),
]


def _idempotency(
    request: Request, session: SessionDep, key: IdempotencyKeyHeader = None
) -> Idempotency:
    return Idempotency(request, session, key)


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
