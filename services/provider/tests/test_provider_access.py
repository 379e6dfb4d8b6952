"""Who may manage and read providers; a PSP's own token sees its own provider and nothing else."""

from typing import Any
from uuid import UUID

import httpx
import pytest

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.databases import row_count as count
from amana_common.testing.service import bearer
from provider.models import Provider
from provider.settings import ProviderSettings

from .conftest import add_pay_point, assert_problem, provider_body, register


@pytest.fixture
async def two_providers(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    ours = await register(client, code="OURS")
    theirs = await register(client, code="THEIRS")
    await add_pay_point(client, ours["id"], code="OURS-1")
    await add_pay_point(client, theirs["id"], code="THEIRS-1")
    return ours, theirs


def as_provider(
    settings: ProviderSettings, provider: dict[str, Any], *also: Role
) -> dict[str, str]:
    return bearer(settings, Role.provider, *also, provider_id=UUID(provider["id"]))


async def test_a_provider_reads_its_own_provider_and_pay_points(
    client: httpx.AsyncClient,
    settings: ProviderSettings,
    two_providers: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    ours, _ = two_providers
    headers = as_provider(settings, ours)

    own = await client.get(f"/providers/{ours['id']}", headers=headers)
    points = await client.get(f"/providers/{ours['id']}/pay-points", headers=headers)
    history = await client.get(f"/providers/{ours['id']}/status-history", headers=headers)

    assert own.status_code == points.status_code == history.status_code == 200
    assert [p["code"] for p in points.json()["items"]] == ["OURS-1"]


async def test_another_providers_objects_are_not_found_for_a_provider_token(
    client: httpx.AsyncClient,
    settings: ProviderSettings,
    two_providers: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    ours, theirs = two_providers
    headers = as_provider(settings, ours)
    their_point = (await client.get(f"/providers/{theirs['id']}/pay-points")).json()["items"][0]

    for path in (
        f"/providers/{theirs['id']}",
        f"/providers/{theirs['id']}/pay-points",
        f"/providers/{theirs['id']}/pay-points/{their_point['id']}",
        f"/providers/{theirs['id']}/status-history",
    ):
        response = await client.get(path, headers=headers)
        assert_problem(response, 404)
        assert "THEIRS" not in response.text


async def test_a_provider_token_with_a_role_that_reads_no_provider_stays_scoped(
    client: httpx.AsyncClient,
    settings: ProviderSettings,
    two_providers: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    ours, theirs = two_providers
    headers = as_provider(settings, ours, Role.analyst)

    own = await client.get(f"/providers/{ours['id']}", headers=headers)
    other = await client.get(f"/providers/{theirs['id']}", headers=headers)
    points = await client.get("/pay-points", headers=headers)

    assert own.status_code == 200
    assert_problem(other, 404)
    assert [p["code"] for p in points.json()["items"]] == ["OURS-1"]


async def test_a_provider_token_lists_only_its_own_pay_points_across_the_directory(
    client: httpx.AsyncClient,
    settings: ProviderSettings,
    two_providers: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    ours, theirs = two_providers
    headers = as_provider(settings, ours)

    everything = await client.get("/pay-points", headers=headers)
    asked_for_theirs = await client.get(
        "/pay-points", params={"provider_id": theirs["id"]}, headers=headers
    )

    assert [p["code"] for p in everything.json()["items"]] == ["OURS-1"]
    assert [p["code"] for p in asked_for_theirs.json()["items"]] == ["OURS-1"]


async def test_a_provider_token_cannot_list_providers_use_the_lookup_or_change_anything(
    client: httpx.AsyncClient,
    settings: ProviderSettings,
    two_providers: tuple[dict[str, Any], dict[str, Any]],
    database: Database,
) -> None:
    ours, _ = two_providers
    headers = as_provider(settings, ours)
    events_before = await count(database, outbox)

    listing = await client.get("/providers", headers=headers)
    lookup = await client.get("/lookup", params={"location_code": "KE-047"}, headers=headers)
    suspend = await client.post(
        f"/providers/{ours['id']}/suspend", json={"reason": "self"}, headers=headers
    )
    add = await client.post(
        f"/providers/{ours['id']}/pay-points", json={"code": "X"}, headers=headers
    )

    assert listing.status_code == lookup.status_code == suspend.status_code == 403
    assert add.status_code == 403
    assert await count(database, outbox) == events_before


@pytest.mark.parametrize("role", [Role.finance, Role.admin])
async def test_finance_and_admins_register_providers(
    role: Role, client: httpx.AsyncClient, settings: ProviderSettings
) -> None:
    response = await client.post(
        "/providers", json=provider_body(code=f"BY-{role.upper()}"), headers=bearer(settings, role)
    )

    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "role",
    [Role.registrar, Role.programme_manager, Role.auditor, Role.analyst, Role.payroll_approver],
)
async def test_other_roles_cannot_register_providers(
    role: Role, client: httpx.AsyncClient, settings: ProviderSettings, database: Database
) -> None:
    response = await client.post("/providers", json=provider_body(), headers=bearer(settings, role))

    assert_problem(response, 403)
    assert await count(database, Provider.__table__) == 0


async def test_registrars_use_the_lookup_and_analysts_see_nothing(
    client: httpx.AsyncClient,
    settings: ProviderSettings,
    two_providers: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    params = {"location_code": "KE-047-0101", "mechanism": "cash_pay_point"}

    registrar = await client.get("/lookup", params=params, headers=bearer(settings, Role.registrar))
    analyst = await client.get("/lookup", params=params, headers=bearer(settings, Role.analyst))

    assert registrar.status_code == 200
    assert {p["code"] for p in registrar.json()["providers"]} == {"OURS", "THEIRS"}
    assert analyst.status_code == 403
