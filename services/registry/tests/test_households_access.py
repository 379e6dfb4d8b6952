"""Who may enrol and read households; refused calls write nothing."""

from datetime import timedelta
from uuid import UUID

import httpx
import jwt
import pytest

from amana_common.auth import Role, issue_token
from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.databases import row_count as count
from amana_common.testing.service import bearer
from registry.settings import RegistrySettings

from .conftest import household

PROVIDER_ID = UUID("0190b7a2-0000-7000-8000-000000000001")


def other_settings(settings: RegistrySettings, **changes: object) -> RegistrySettings:
    return settings.model_copy(update=changes)


def bad_tokens(settings: RegistrySettings) -> dict[str, str]:
    return {
        "expired": issue_token(settings, "x", [Role.admin], lifetime=timedelta(minutes=-5)),
        "wrong secret": issue_token(
            other_settings(settings, jwt_secret="another-secret-of-at-least-32-bytes!"),
            "x",
            [Role.admin],
        ),
        "wrong audience": issue_token(
            other_settings(settings, jwt_audience="someone-else"), "x", [Role.admin]
        ),
        "wrong issuer": issue_token(
            other_settings(settings, jwt_issuer="https://evil.example"), "x", [Role.admin]
        ),
        "unsigned": jwt.encode({"sub": "x", "roles": ["admin"]}, key="", algorithm="none"),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize(
    "case", ["expired", "wrong secret", "wrong audience", "wrong issuer", "unsigned", "garbage"]
)
async def test_a_bad_token_is_401_and_nothing_is_written(
    case: str, client: httpx.AsyncClient, settings: RegistrySettings, database: Database
) -> None:
    token = bad_tokens(settings)[case]

    response = await client.post(
        "/households", json=household(), headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert await count(database, outbox) == 0


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    del client.headers["Authorization"]

    assert (await client.get("/households")).status_code == 401
    assert (await client.post("/households", json=household())).status_code == 401


@pytest.mark.parametrize(
    "role", [Role.analyst, Role.provider, Role.finance, Role.auditor, Role.programme_manager]
)
async def test_only_registrars_and_admins_enrol(
    role: Role, client: httpx.AsyncClient, settings: RegistrySettings, database: Database
) -> None:
    headers = bearer(settings, role, provider_id=PROVIDER_ID if role == Role.provider else None)

    response = await client.post("/households", json=household(), headers=headers)

    assert response.status_code == 403, response.text
    assert response.json()["type"].endswith("/forbidden")
    assert await count(database, outbox) == 0


async def test_a_registrar_enrols_and_an_auditor_reads(
    client: httpx.AsyncClient, settings: RegistrySettings
) -> None:
    created = await client.post(
        "/households", json=household(), headers=bearer(settings, Role.registrar)
    )
    read = await client.get(created.headers["location"], headers=bearer(settings, Role.auditor))

    assert created.status_code == 201
    assert read.status_code == 200


@pytest.mark.parametrize("role", [Role.analyst, Role.provider, Role.finance])
async def test_household_data_is_hidden_from_other_roles(
    role: Role, client: httpx.AsyncClient, settings: RegistrySettings
) -> None:
    created = (await client.post("/households", json=household())).json()
    headers = bearer(settings, role, provider_id=PROVIDER_ID if role == Role.provider else None)

    assert (await client.get(f"/households/{created['id']}", headers=headers)).status_code == 403
    assert (await client.get("/households", headers=headers)).status_code == 403


async def test_health_and_metrics_need_no_token(client: httpx.AsyncClient) -> None:
    del client.headers["Authorization"]

    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200
