"""The audit middleware on an app of the shared factory: what a read record holds, and that
what the caller controls (forwarded chain, filters) is bounded or left out."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from amana_common.audit import audited_read
from amana_common.auth import public
from amana_common.testing.clients import app_without_database, captured_json_log, service_client

router = APIRouter(dependencies=[public("a test route")])


@router.get("/people", dependencies=[audited_read("person", filters=("area",))])
async def people(area: str = "", name: str = "") -> dict[str, Any]:
    return {"items": [{"id": "p-1", "name": "Amina"}, {"id": "p-2", "name": "Baraka"}]}


@router.get("/weather")
async def weather() -> dict[str, str]:
    return {"id": "today", "sky": "clear"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with service_client(app_without_database(router)) as client:
        yield client


async def test_a_marked_read_records_the_ids_and_only_the_named_filters(
    client: httpx.AsyncClient,
) -> None:
    chain = ", ".join(f"198.51.100.{hop}" for hop in range(25))
    with captured_json_log("amana.audit") as log:
        await client.get(
            "/people?area=KE-047&name=Amina", headers={"X-Forwarded-For": chain + ", " + "x" * 500}
        )
        await client.get("/weather")

    [line] = log.getvalue().splitlines()
    record = json.loads(line)["audit"]
    assert record["read"] == {
        "kind": "person",
        "ids": ["p-1", "p-2"],
        "count": 2,
        "filters": {"area": "KE-047"},
    }
    assert record["forwarded_for"] == [f"198.51.100.{hop}" for hop in range(20)]
    assert record["role"] is None and record["principal"] is None
    assert "Amina" not in line and "Baraka" not in line
