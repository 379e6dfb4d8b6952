"""Every write and every read of household data leaves one audit record: who, with which role,
from where, what, and the ids read; never a name or an identifier."""

import json
from typing import Any

import httpx

from amana_common.audit import AUDITED_READ_ATTRIBUTE
from amana_common.auth import Role
from amana_common.testing.clients import captured_json_log
from amana_common.testing.service import api_routes, bearer
from registry.main import create_registry_app
from registry.settings import RegistrySettings

from .conftest import household

FORWARDED = {"X-Forwarded-For": "203.0.113.9, 10.0.0.2"}


def records(log: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.getvalue().splitlines()]


def assert_no_personal_data(log: Any) -> None:
    for value in ("Amina", "Otieno", "Baraka", "12345678", "+254700000001"):
        assert value not in log.getvalue()


async def test_a_write_records_the_client_and_the_role_that_authorised_it(
    client: httpx.AsyncClient, settings: RegistrySettings
) -> None:
    """The token holds analyst and registrar; only registrar may enrol, so registrar is the
    role recorded (not the first of the token's roles)."""
    headers = bearer(settings, Role.analyst, Role.registrar) | FORWARDED
    with captured_json_log("amana.audit") as log:
        created = await client.post("/households", json=household(), headers=headers)
        refused = await client.post(
            "/households", json=household(), headers=bearer(settings, Role.analyst)
        )

    first, second = records(log)
    assert first["audit"] == {
        "service": "registry",
        "action": "write",
        "principal": "test-analyst-registrar",
        "role": "registrar",
        "method": "POST",
        "route": "/households",
        "target": created.json()["id"],
        "outcome": 201,
        "client": "127.0.0.1",
        "forwarded_for": ["203.0.113.9", "10.0.0.2"],
    }
    assert first["request_id"] == created.headers["x-request-id"]
    assert second["audit"]["outcome"] == refused.status_code == 403
    assert second["audit"]["role"] is None
    assert second["audit"]["forwarded_for"] == []
    assert_no_personal_data(log)


async def test_reading_a_household_records_its_id(
    client: httpx.AsyncClient, settings: RegistrySettings
) -> None:
    created = (await client.post("/households", json=household())).json()
    headers = bearer(settings, Role.auditor) | FORWARDED

    with captured_json_log("amana.audit") as log:
        await client.get(f"/households/{created['id']}", headers=headers)

    [record] = records(log)
    assert record["audit"] == {
        "service": "registry",
        "action": "read",
        "principal": "test-auditor",
        "role": "auditor",
        "method": "GET",
        "route": "/households/{household_id}",
        "target": created["id"],
        "outcome": 200,
        "client": "127.0.0.1",
        "forwarded_for": ["203.0.113.9", "10.0.0.2"],
        "read": {"kind": "household", "ids": [created["id"]], "count": 1, "filters": {}},
    }
    assert_no_personal_data(log)


async def test_listing_households_records_the_ids_count_and_filters(
    client: httpx.AsyncClient, settings: RegistrySettings
) -> None:
    ids = [(await client.post("/households", json=household())).json()["id"] for _ in range(3)]
    headers = bearer(settings, Role.programme_manager)

    with captured_json_log("amana.audit") as log:
        await client.get("/households?limit=2&status=active", headers=headers)
        await client.get("/households?location_code=KE-999", headers=headers)

    listed, empty = (record["audit"] for record in records(log))
    assert listed["role"] == "programme_manager"
    assert listed["read"] == {
        "kind": "household",
        "ids": ids[:2],
        "count": 2,
        "filters": {"limit": "2", "status": "active"},
    }
    assert empty["read"]["count"] == 0
    assert empty["read"]["filters"] == {"location_code": "KE-999"}
    assert_no_personal_data(log)


async def test_a_refused_read_is_audited_too(
    client: httpx.AsyncClient, settings: RegistrySettings
) -> None:
    created = (await client.post("/households", json=household())).json()

    with captured_json_log("amana.audit") as log:
        await client.get(f"/households/{created['id']}", headers=bearer(settings, Role.analyst))

    [record] = records(log)
    assert record["audit"]["outcome"] == 403
    assert record["audit"]["principal"] == "test-analyst"
    assert record["audit"]["role"] is None
    assert record["audit"]["read"]["ids"] == []


def test_every_read_of_household_data_is_an_audited_read(settings: RegistrySettings) -> None:
    routes = api_routes(create_registry_app(settings))
    reads = [
        route.path
        for route in routes
        if "GET" in (route.methods or ())
        and route.path.startswith(("/households", "/duplicates"))
        and not route.path.startswith("/duplicates/runs")  # runs hold counts, no household
    ]
    audited = [
        route.path
        for route in routes
        if any(
            getattr(dependency.call, AUDITED_READ_ATTRIBUTE, None)
            for dependency in route.dependant.dependencies
        )
    ]
    assert [path for path in audited if path.startswith("/fhir")] == [
        "/fhir/Group/{household_id}",
        "/fhir/Patient/{member_id}",
        "/fhir/Group",
    ]
    assert (
        reads
        == [path for path in audited if not path.startswith("/fhir")]
        == [
            "/households/search",
            "/households/{household_id}",
            "/households",
            "/households/{household_id}/status-history",
            "/households/{household_id}/history",
            "/duplicates",
            "/duplicates/{flag_id:uuid}",
        ]
    )
