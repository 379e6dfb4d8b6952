"""What the sandbox's tests share: how Amana would call it, and how they configure it."""

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from uuid6 import uuid7

from amana_common.testing.service import TEST_BODY_LIMIT
from psp_sandbox.settings import SandboxSettings

PROBLEM = "application/problem+json"
SECRET = "whsec_" + base64.b64encode(b"sandbox-test-secret-32-bytes-long").decode()


def fast_settings(url: str, **values: Any) -> SandboxSettings:
    """Settings whose worker polls and retries quickly, for tests that wait on it."""
    defaults: dict[str, Any] = {
        "database_url": url,
        "environment": "test",
        "max_body_bytes": TEST_BODY_LIMIT * 64,
        "poll_interval_s": 0.05,
        "retry_base_s": 0.05,
        "retry_cap_s": 0.2,
        "max_attempts": 5,
        "delivery_timeout_s": 5,
        "delivery_lease_s": 10,
    }
    return SandboxSettings(**(defaults | values))


def api_key_for(provider_id: UUID) -> str:
    return f"sandbox-key-{provider_id.hex}"


def psp_headers(provider_id: UUID, batch_id: UUID | None = None) -> dict[str, str]:
    """What Amana's dispatcher sends: the provider's API key, and the batch id as the key."""
    headers = {"Authorization": f"Bearer {api_key_for(provider_id)}"}
    if batch_id is not None:
        headers["Idempotency-Key"] = str(batch_id)
    return headers


def provider_config(provider_id: UUID, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "api_key": api_key_for(provider_id),
        "webhook_url": f"http://127.0.0.1:9/webhooks/providers/{provider_id}",
        "webhook_secret": SECRET,
        "settle_delay_s": 0,
        "failure_rate": 0.2,
        "results_per_webhook": 10,
        "seed": 7,
    }
    body.update(overrides)
    return body


async def configure(
    client: httpx.AsyncClient, provider_id: UUID | None = None, **overrides: Any
) -> UUID:
    provider_id = provider_id or uuid7()
    response = await client.put(
        f"/sandbox/providers/{provider_id}", json=provider_config(provider_id, **overrides)
    )
    assert response.status_code in (200, 201), response.text
    return provider_id


def batch_body(
    provider_id: UUID,
    count: int = 3,
    *,
    batch_id: UUID | None = None,
    prefix: str = "P",
    amount_minor: int = 150_000,
    mechanism: str = "mobile_money",
    pay_by: datetime | None = None,
) -> dict[str, Any]:
    pay_by = pay_by or datetime.now(UTC) + timedelta(days=7)
    payments = [
        {
            "payment_number": f"{prefix}{index:06d}",
            "amount_minor": amount_minor,
            "currency": "KES",
            "mechanism": mechanism,
            "recipient": {"name": "Recipient", "phone": "+254700000001"},
            "account": {"kind": "msisdn", "value": "+254700000001"},
            "pay_by": pay_by.isoformat(),
        }
        for index in range(count)
    ]
    return {
        "batch_id": str(batch_id or uuid7()),
        "provider_id": str(provider_id),
        "currency": "KES",
        "payment_count": count,
        "total_amount_minor": amount_minor * count,
        "payments": payments,
    }


async def post_batch(
    client: httpx.AsyncClient, body: dict[str, Any], provider_id: UUID | None = None
) -> httpx.Response:
    provider = provider_id or UUID(body["provider_id"])
    return await client.post(
        "/batches", json=body, headers=psp_headers(provider, UUID(body["batch_id"]))
    )


async def put_faults(
    client: httpx.AsyncClient, *faults: dict[str, Any], provider_id: UUID | None = None
) -> list[dict[str, Any]]:
    path = "/sandbox/faults" if provider_id is None else f"/sandbox/providers/{provider_id}/faults"
    response = await client.put(path, json={"faults": list(faults)})
    assert response.status_code == 200, response.text
    created: list[dict[str, Any]] = response.json()
    return created


async def all_pages(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {k: v for k, v in params.items() if v is not None} | {"limit": 200}
        if cursor:
            query["cursor"] = cursor
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        items.extend(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return items


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    if field is not None:
        assert field in [e["field"] for e in problem.get("errors", [])], problem
