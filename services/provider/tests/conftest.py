from pathlib import Path
from typing import Any

import httpx

from amana_common.testing.service import committing_fixtures, service_fixtures
from provider.main import create_provider_app
from provider.settings import ProviderSettings

SERVICE_DIR = Path(__file__).resolve().parents[1]
API_HOSTS = ["api.mpesa.example", "*.bank.example", "127.0.0.1"]


def provider_settings(**values: Any) -> ProviderSettings:
    return ProviderSettings(allowed_api_hosts=API_HOSTS, **values)


database_url, database, settings, client = service_fixtures(
    "provider", SERVICE_DIR, provider_settings, create_provider_app
)
committed_database, committed_client = committing_fixtures(
    "provider", SERVICE_DIR, provider_settings, create_provider_app
)

PROBLEM = "application/problem+json"


def provider_body(**overrides: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": "MPESA-KE",
        "legal_name": "Safaricom M-PESA",
        "country": "KE",
        "currencies": ["KES"],
        "mechanisms": ["mobile_money", "cash_pay_point"],
        "service_areas": ["KE-047", "KE-001"],
        "contact": {
            "name": "Payments desk",
            "email": "desk@mpesa.example",
            "phone": "+254700000009",
        },
        "fee": {"currency": "KES", "fixed_minor": 3000, "basis_points": 150},
        "delivery": {"mode": "api", "base_url": "https://api.mpesa.example/v1"},
    }
    body.update(overrides)
    return body


def pay_point_body(**overrides: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": "AG-0001",
        "name": "Kibera market agent",
        "location_codes": ["KE-047-0101"],
        "gps": {"latitude": -1.3133, "longitude": 36.7876},
        "opening_days": ["mon", "tue", "wed", "thu", "fri"],
        "daily_capacity": 400,
    }
    body.update(overrides)
    return body


async def register(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    response = await client.post("/providers", json=provider_body(**overrides))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def add_pay_point(
    client: httpx.AsyncClient, provider_id: str, **overrides: object
) -> dict[str, Any]:
    response = await client.post(
        f"/providers/{provider_id}/pay-points", json=pay_point_body(**overrides)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> None:
    """A problem+json answer of `status`, naming `field` when given."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    if field is not None:
        assert field in [e["field"] for e in problem.get("errors", [])], problem
