"""Concurrent changes of one provider, on a database whose sessions really commit: each
request has its own connection and transaction, as in production."""

import asyncio

import httpx

from amana_common.db import Database
from amana_common.testing.databases import outbox_events, slowed_writes

from .conftest import add_pay_point, register

SLOW_S = 0.5


async def test_two_concurrent_patches_with_one_if_match_are_200_and_412(
    committed_client: httpx.AsyncClient, committed_database: Database
) -> None:
    """The second arrives while the first's transaction is open (its update sleeps): it must
    not apply its change on the version the first replaced."""
    provider = await register(committed_client)
    url = f"/providers/{provider['id']}"
    headers = {"If-Match": '"1"'}

    async with slowed_writes(committed_database, "providers", SLOW_S, operation="UPDATE"):
        responses = await asyncio.gather(
            committed_client.patch(url, json={"legal_name": "First"}, headers=headers),
            committed_client.patch(url, json={"legal_name": "Second"}, headers=headers),
        )

    assert sorted(r.status_code for r in responses) == [200, 412], [r.text for r in responses]
    applied = next(r for r in responses if r.status_code == 200).json()
    refused = next(r for r in responses if r.status_code == 412)
    assert refused.headers["etag"] == '"2"'
    current = (await committed_client.get(url)).json()
    assert current["version"] == 2
    assert current["legal_name"] == applied["legal_name"]
    updates = [e for e in await outbox_events(committed_database) if "Updated" in e.type]
    assert [e.data["version"] for e in updates] == [2]


async def test_two_concurrent_pay_point_patches_with_one_if_match_are_200_and_412(
    committed_client: httpx.AsyncClient, committed_database: Database
) -> None:
    provider = await register(committed_client)
    pay_point = await add_pay_point(committed_client, provider["id"])
    url = f"/providers/{provider['id']}/pay-points/{pay_point['id']}"
    headers = {"If-Match": '"1"'}

    async with slowed_writes(committed_database, "pay_points", SLOW_S, operation="UPDATE"):
        responses = await asyncio.gather(
            committed_client.patch(url, json={"daily_capacity": 10}, headers=headers),
            committed_client.patch(url, json={"daily_capacity": 20}, headers=headers),
        )

    assert sorted(r.status_code for r in responses) == [200, 412], [r.text for r in responses]
    current = (await committed_client.get(url)).json()
    assert current["version"] == 2
    assert current["daily_capacity"] == next(
        r.json()["daily_capacity"] for r in responses if r.status_code == 200
    )
    provider_now = (await committed_client.get(f"/providers/{provider['id']}")).json()
    assert provider_now["version"] == provider["version"] + 2  # the pay point's add and change
