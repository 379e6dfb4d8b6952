"""A provider registered over HTTP reaches `provider.events` on the real broker, as a
CloudEvent carrying its snapshot and no secret."""

import json
import re
from uuid import UUID

import httpx

from amana_common.db import Database
from amana_contracts.provider import ProviderRegisteredV1

from .conftest import post_and_consume

PROVIDER = {
    "code": "AIRTEL-KE",
    "legal_name": "Airtel Money Kenya",
    "country": "KE",
    "currencies": ["KES"],
    "mechanisms": ["mobile_money"],
    "service_areas": ["KE"],
    "contact": {"name": "Settlement desk", "email": "settle@airtel.psp.example"},
    "fee": {"currency": "KES", "fixed_minor": 1500, "basis_points": 50},
    "delivery": {"mode": "api", "base_url": "https://api.airtel.psp.example/disburse"},
}


async def test_registered_provider_is_published_as_a_cloudevent(
    provider_client: httpx.AsyncClient, provider_db: Database, kafka_bootstrap: str
) -> None:
    created, envelope = await post_and_consume(
        provider_client,
        provider_db,
        kafka_bootstrap,
        "provider",
        "/providers",
        PROVIDER,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    )

    assert envelope["type"] == "amana.provider.ProviderRegistered.v1"
    payload = ProviderRegisteredV1.model_validate(envelope["data"])
    assert payload.provider_id == UUID(created["id"])
    assert payload.code == "AIRTEL-KE"
    assert payload.delivery.base_url == "https://api.airtel.psp.example/disburse"
    assert payload.fee.basis_points == 50
    assert payload.version == 1
    text = json.dumps(envelope)
    assert not re.search(r"secret|password|token|api_?key|credential", text, re.I)
    assert "settle@airtel.psp.example" not in text, "contact details stay in the service"
