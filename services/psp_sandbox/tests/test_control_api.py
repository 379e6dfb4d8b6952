"""The sandbox's own API: provider accounts and faults, for an admin only."""

from typing import Any
from uuid import UUID

import httpx
import pytest
from uuid6 import uuid7

from amana_common.auth import Role
from amana_common.cli import worker_probe_app
from amana_common.db import Database
from amana_common.testing.clients import service_client
from amana_common.testing.databases import row_count
from amana_common.testing.service import bearer
from psp_sandbox.main import create_psp_sandbox_app
from psp_sandbox.models import Fault, SandboxProvider
from psp_sandbox.settings import SandboxSettings

from .support import all_pages, assert_problem, configure, provider_config, put_faults


async def test_a_provider_account_is_created_then_replaced_with_a_new_version(
    client: httpx.AsyncClient,
) -> None:
    provider_id = uuid7()

    created = await client.put(
        f"/sandbox/providers/{provider_id}", json=provider_config(provider_id)
    )
    replaced = await client.put(
        f"/sandbox/providers/{provider_id}",
        json=provider_config(provider_id, failure_rate=0.5),
        headers={"If-Match": created.headers["ETag"]},
    )

    assert created.status_code == 201, created.text
    assert created.headers["Location"].endswith(f"/sandbox/providers/{provider_id}")
    assert replaced.status_code == 200
    assert replaced.headers["ETag"] == '"2"'
    assert replaced.json()["failure_rate"] == 0.5
    read = await client.get(f"/sandbox/providers/{provider_id}")
    assert read.json() == replaced.json()


async def test_secrets_are_never_answered_and_the_api_key_is_kept_hashed(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider_id = await configure(client)
    config = provider_config(provider_id)

    answer = (await client.get(f"/sandbox/providers/{provider_id}")).text

    assert config["api_key"] not in answer and config["webhook_secret"] not in answer
    async with database.sessionmaker() as session:
        stored = await session.get(SandboxProvider, provider_id)
    assert stored is not None and stored.api_key_hash != config["api_key"]
    assert len(stored.api_key_hash) == 64


async def test_a_stale_if_match_is_412(client: httpx.AsyncClient) -> None:
    provider_id = await configure(client)
    await configure(client, provider_id, seed=2)

    response = await client.put(
        f"/sandbox/providers/{provider_id}",
        json=provider_config(provider_id),
        headers={"If-Match": '"1"'},
    )

    assert_problem(response, 412)
    assert response.headers["ETag"] == '"2"'


async def test_an_api_key_belongs_to_one_provider(client: httpx.AsyncClient) -> None:
    first = await configure(client)
    other = uuid7()

    response = await client.put(
        f"/sandbox/providers/{other}",
        json=provider_config(other, api_key=provider_config(first)["api_key"]),
    )

    assert_problem(response, 409)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("webhook_secret", "not-a-secret"),
        ("webhook_secret", "whsec_c2hvcnQ="),  # 5 bytes
        ("webhook_secret", "whsec_!!!!"),
        ("webhook_url", "ftp://127.0.0.1/x"),
        ("webhook_url", "http://user:pw@127.0.0.1/x"),
        ("webhook_url", "http://127.0.0.1/\x00"),
        ("webhook_url", "http://127.0.0.1:99999/x"),
        ("api_key", "short"),
        ("api_key", "a key with spaces in it, long enough"),
        ("failure_rate", 1.5),
        ("settle_delay_s", -1),
        ("results_per_webhook", 5001),
        ("reason_mix", {"ac01": 1}),
        ("reason_mix", {"AC01": 0}),
    ],
)
async def test_bad_configuration_is_422_naming_the_field(
    client: httpx.AsyncClient, database: Database, field: str, value: Any
) -> None:
    provider_id = uuid7()

    response = await client.put(
        f"/sandbox/providers/{provider_id}", json=provider_config(provider_id, **{field: value})
    )

    assert response.status_code == 422, response.text
    fields = [e["field"] for e in response.json()["errors"]]
    assert any(f == field or f.startswith(f"{field}.") or f == "body" for f in fields), fields
    assert await row_count(database, SandboxProvider) == 0


async def test_faults_replace_their_scope_and_are_listed(client: httpx.AsyncClient) -> None:
    provider_id = await configure(client)
    await put_faults(client, {"kind": "outage", "count": 1})
    await put_faults(client, {"kind": "slow", "delay_s": 1, "count": 1}, provider_id=provider_id)

    replaced = await put_faults(client, {"kind": "replay", "count": 3})

    in_force = await all_pages(client, "/sandbox/faults", in_force="true")
    assert sorted(f["kind"] for f in in_force) == ["replay", "slow"]
    assert replaced[0]["params"] == {"delay_s": 0}
    assert replaced[0]["max_count"] == 3
    ended = await all_pages(client, "/sandbox/faults", in_force="false")
    assert [f["kind"] for f in ended] == ["outage"]


async def test_delete_ends_every_fault(client: httpx.AsyncClient, database: Database) -> None:
    provider_id = await configure(client)
    await put_faults(client, {"kind": "outage", "count": 1})
    await put_faults(client, {"kind": "outage", "count": 1}, provider_id=provider_id)

    response = await client.delete("/sandbox/faults")

    assert response.status_code == 204
    assert await all_pages(client, "/sandbox/faults", in_force="true") == []
    assert await row_count(database, Fault) == 2


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "outage"},  # unbounded
        {"kind": "outage", "mode": "refuse", "count": 1},
        {"kind": "outage", "mode": "refuse", "for_s": 301},
        {"kind": "slow", "count": 1},
        {"kind": "slow", "delay_s": 121, "count": 1},
        {"kind": "error_500", "rate": 0, "count": 1},
        {"kind": "amount_mismatch", "delta_minor": 0, "count": 1},
        {"kind": "stale_timestamp", "age_s": 120, "count": 1},
        {"kind": "reorder", "count": 1},
        {"kind": "bad_signature", "variant": "polite", "count": 1},
        {"kind": "teleport", "count": 1},
        {"kind": "replay", "count": 1, "surprise": 1},
        {"kind": "slow", "delay_s": 1, "count": 1, "variant": "missing"},  # another kind's
    ],
)
async def test_bad_faults_are_422_and_change_nothing(
    client: httpx.AsyncClient, database: Database, fault: dict[str, Any]
) -> None:
    response = await client.put("/sandbox/faults", json={"faults": [fault]})

    assert_problem(response, 422)
    assert await row_count(database, Fault) == 0


async def test_a_refuse_outage_needs_the_sandboxs_own_server(client: httpx.AsyncClient) -> None:
    provider_id = await configure(client)
    refuse = {"kind": "outage", "mode": "refuse", "for_s": 1}

    in_process = await client.put("/sandbox/faults", json={"faults": [refuse]})
    per_provider = await client.put(
        f"/sandbox/providers/{provider_id}/faults", json={"faults": [refuse]}
    )

    assert_problem(in_process, 409)
    assert_problem(per_provider, 422, "faults")


async def test_faults_for_an_unknown_provider_are_404(client: httpx.AsyncClient) -> None:
    response = await client.put(
        f"/sandbox/providers/{uuid7()}/faults", json={"faults": [{"kind": "outage", "count": 1}]}
    )

    assert_problem(response, 404)


@pytest.mark.parametrize("role", [Role.finance, Role.provider, Role.auditor])
async def test_only_an_admin_controls_the_sandbox(
    client: httpx.AsyncClient, settings: SandboxSettings, role: Role
) -> None:
    headers = bearer(settings, role, provider_id=UUID(int=1) if role == Role.provider else None)

    response = await client.get("/sandbox/deliveries", headers=headers)

    assert_problem(response, 403)


async def test_readiness_of_api_and_worker_does_not_depend_on_kafka(
    settings: SandboxSettings, committed_database: Database
) -> None:
    """The sandbox neither publishes nor consumes: a broker outage is none of its business."""
    unreachable = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:9"})
    api = create_psp_sandbox_app(unreachable)
    worker = worker_probe_app(unreachable, committed_database)

    for app in (api, worker):
        async with service_client(app, committed_database) as http:
            response = await http.get("/readyz")

        assert response.status_code == 200, response.text
        assert response.json()["checks"] == {"database": "ok"}
