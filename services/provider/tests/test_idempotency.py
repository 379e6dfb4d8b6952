"""Every POST honours `Idempotency-Key`: the same key and body replay the stored answer
without writing again; the same key with another body is 422."""

from typing import Any

import httpx
import pytest

from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.databases import row_count as count

from .conftest import assert_problem, pay_point_body, provider_body, register


async def _target(client: httpx.AsyncClient, post: str) -> tuple[str, list[dict[str, Any]], int]:
    """The URL, two different bodies and the status of one kind of POST, after what it needs
    exists."""
    if post == "register":
        return "/providers", [provider_body(), provider_body(code="OTHER")], 201
    provider = await register(client, code="EXISTING")
    if post == "suspend":
        return (
            f"/providers/{provider['id']}/suspend",
            [{"reason": "Audit"}, {"reason": "Fraud"}],
            200,
        )
    bodies = [pay_point_body(), pay_point_body(code="OTHER")]
    return f"/providers/{provider['id']}/pay-points", bodies, 201


POSTS = ["register", "suspend", "add-pay-point"]


@pytest.mark.parametrize("post", POSTS)
async def test_same_key_and_body_replay_without_writing_again(
    client: httpx.AsyncClient, database: Database, post: str
) -> None:
    url, [body, _], status = await _target(client, post)
    events_before = await count(database, outbox)
    headers = {"Idempotency-Key": f"replay-{post}"}

    first = await client.post(url, json=body, headers=headers)
    second = await client.post(url, json=body, headers=headers)

    assert first.status_code == second.status_code == status, first.text
    assert second.json() == first.json()
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers.get("location") == first.headers.get("location")
    assert second.headers["idempotent-replayed"] == "true"
    assert await count(database, outbox) == events_before + 1


@pytest.mark.parametrize("post", POSTS)
async def test_same_key_with_another_body_is_422(
    client: httpx.AsyncClient, database: Database, post: str
) -> None:
    url, [body, other], _ = await _target(client, post)
    headers = {"Idempotency-Key": f"reuse-{post}"}
    await client.post(url, json=body, headers=headers)
    events_before = await count(database, outbox)

    response = await client.post(url, json=other, headers=headers)

    assert_problem(response, 422)
    assert response.json()["type"].endswith("/idempotency-key-reused")
    assert await count(database, outbox) == events_before
