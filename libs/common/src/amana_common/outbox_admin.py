"""Admin routes over the outbox of every service with a database: the rows the relay parked
after repeated refusals, and sending one back to the relay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from amana_common.auth import Role, require
from amana_common.db import SessionDep
from amana_common.errors import PROBLEM_RESPONSES, Problem
from amana_common.outbox import parked_rows, unpark
from amana_common.pagination import DEFAULT_PAGE_SIZE, Limit, Page, page

MAX_POSITION = 2**63 - 1

PositionCursor = Annotated[
    int | None,
    Query(ge=0, le=MAX_POSITION, description="`next_cursor` of the previous page"),
]
Position = Annotated[int, Path(ge=1, le=MAX_POSITION, description="The row's outbox position")]


class OutboxRowOut(BaseModel):
    """An outbox row that the relay could not publish (never its payload)."""

    model_config = ConfigDict(from_attributes=True)

    position: int = Field(description="Order of writing; rows of one key are published in it")
    event_id: UUID
    topic: str
    key: str = Field(description="The Kafka key (aggregate id); its later rows wait behind")
    event_type: str
    created_at: datetime
    attempts: int = Field(description="Publishes the broker refused")
    last_error: str | None = Field(description="The broker's last refusal: error class and message")
    parked_at: datetime | None = Field(description="When it was set aside; null once retried")


def outbox_admin_router() -> APIRouter:
    router = APIRouter(
        prefix="/admin/outbox",
        tags=["operations"],
        dependencies=[require(Role.admin)],
        responses=PROBLEM_RESPONSES,
    )

    @router.get(
        "/parked",
        response_model=Page[OutboxRowOut],
        summary="List parked outbox rows",
        description="Rows the relay set aside after repeated refusals, oldest first; each "
        "blocks the later rows of its key (the other keys keep flowing).",
    )
    async def list_parked(
        session: SessionDep, limit: Limit = DEFAULT_PAGE_SIZE, cursor: PositionCursor = None
    ) -> Page[OutboxRowOut]:
        rows = await parked_rows(session, cursor, limit)
        return page(rows, limit, OutboxRowOut.model_validate, lambda row: row.position)

    @router.post(
        "/parked/{position}/retry",
        response_model=OutboxRowOut,
        summary="Send a parked outbox row back to the relay",
        description="Clears its parking and attempt count; the relay publishes it, then the "
        "rows of its key that waited behind it. 404 when no row is parked there.",
    )
    async def retry_parked(position: Position, session: SessionDep) -> OutboxRowOut:
        row = await unpark(session, position)
        if row is None:
            raise Problem(404, "not-found", f"No parked outbox row at position {position}")
        return OutboxRowOut.model_validate(row)

    return router
