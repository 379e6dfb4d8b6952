"""Every provider change leaves its event in the outbox, valid against its contract, keyed by
the provider, and free of secrets and contact details."""

import json
import re
from typing import Any

import httpx

from amana_common.db import Database
from amana_common.testing.databases import outbox_events
from amana_contracts.catalog import EVENTS, payload_model

from .conftest import add_pay_point, register

SECRET_LOOKING = re.compile(r"secret|password|passwd|token|api_?key|credential|private", re.I)


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in (key, *_keys(item))]
    if isinstance(value, list):
        return [k for item in value for k in _keys(item)]
    return []


async def test_each_change_publishes_its_contract_and_no_secret(
    client: httpx.AsyncClient, database: Database
) -> None:
    provider = await register(
        client, delivery={"mode": "api", "base_url": "https://payments.bank.example/v2"}
    )
    url = f"/providers/{provider['id']}"
    point = await add_pay_point(client, provider["id"])
    await client.patch(url, json={"legal_name": "Renamed"}, headers={"If-Match": '"2"'})
    await client.patch(
        f"{url}/pay-points/{point['id']}", json={"name": "Moved"}, headers={"If-Match": '"1"'}
    )
    await client.post(f"{url}/suspend", json={"reason": "Float exhausted"})
    await client.post(f"{url}/reactivate", json={"reason": "Float topped up"})

    events = await outbox_events(database)

    assert [e.name for e in events] == [
        "ProviderRegistered",
        "ProviderUpdated",
        "ProviderUpdated",
        "ProviderUpdated",
        "ProviderSuspended",
        "ProviderReactivated",
    ]
    assert {e.type for e in events} == {e.cloudevent_type() for e in EVENTS["provider"]}
    versions = []
    for event in events:
        model = payload_model(event.type)
        assert model is not None, event.type
        versions.append(model.model_validate(event.data).version)  # type: ignore[attr-defined]
        assert event.source == "amana/provider"
        assert event.subject == provider["id"]
        assert event.traceparent is not None
        assert not [k for k in _keys(event.data) if SECRET_LOOKING.search(k)], event.data
        text = json.dumps(event.data)
        for personal in ("desk@mpesa.example", "+254700000009", "Payments desk"):
            assert personal not in text
    assert versions == [1, 2, 3, 4, 5, 6], "each event carries the version it made"
