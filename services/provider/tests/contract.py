"""What the provider's contract test needs beyond the defaults (amana_common.testing.contract)."""

import httpx

from amana_common.testing.contract import Contract

# Rules that depend on configuration or on what is stored, which JSON Schema cannot state.
BASE_URL = "delivery.base_url"  # allowlisted hosts and ports, no private or metadata address
LOCATIONS = "location_codes.*"  # inside the provider's service areas
FEE = "fee.currency"  # one of the provider's currencies (the request's or the stored ones)


def a_provider_with_a_pay_point(client: httpx.Client) -> None:
    """Generated pay points rarely fall inside a generated provider's service areas: one that
    does gives the stateful phase pay points to read, change and remove (found by listing)."""
    provider = client.post(
        "/providers",
        json={
            "code": "CONTRACT-CASH",
            "legal_name": "Contract cash agent",
            "country": "KE",
            "currencies": ["KES"],
            "mechanisms": ["cash_pay_point"],
            "service_areas": ["KE"],
            "fee": {"currency": "KES", "fixed_minor": 0, "basis_points": 0},
            "delivery": {"mode": "file", "file_profile": {"format": "csv"}},
        },
    )
    provider.raise_for_status()
    pay_point = client.post(
        f"/providers/{provider.json()['id']}/pay-points",
        json={
            "code": "AG-1",
            "name": "Market agent",
            "location_codes": ["KE-047"],
            "opening_days": ["mon"],
            "daily_capacity": 10,
        },
    )
    pay_point.raise_for_status()


CONTRACT = Contract(
    prepare=a_provider_with_a_pay_point,
    beyond_schema={
        "POST /providers": {BASE_URL, FEE},
        "PATCH /providers/{provider_id}": {BASE_URL, FEE, "mechanisms", "service_areas"},
        "POST /providers/{provider_id}/pay-points": {LOCATIONS, "provider_id"},
        "PATCH /providers/{provider_id}/pay-points/{pay_point_id}": {LOCATIONS},
    },
)
