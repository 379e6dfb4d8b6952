"""Keyset pagination over uuid7 ids: pages in id (creation) order, `limit` 1-200, and the last
id of a page as the opaque `next_cursor` of the next. No OFFSET, so a page costs the same at
the end of a table as at its start, and rows created meanwhile neither repeat nor vanish."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")]
Cursor = Annotated[UUID | None, Query(description="`next_cursor` of the previous page")]

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S", bound=Select[Any])


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page")


def keyset(
    statement: S, id_column: InstrumentedAttribute[UUID], limit: int, after: UUID | None
) -> S:
    """`statement` in id order after the cursor, `limit` + 1 rows so the caller can tell whether
    another page follows."""
    statement = statement.order_by(id_column).limit(limit + 1)
    if after is not None:
        statement = statement.where(id_column > after)
    return statement


def page(
    rows: Sequence[R], limit: int, item: Callable[[R], T], cursor: Callable[[R], UUID | int]
) -> Page[T]:
    """The first `limit` of the `limit` + 1 rows `keyset` fetched, and the cursor past them."""
    shown = rows[:limit]
    next_cursor = str(cursor(shown[-1])) if len(rows) > limit else None
    return Page(items=[item(row) for row in shown], next_cursor=next_cursor)
