"""Every event type Amana publishes, per service topic."""

from __future__ import annotations

from amana_contracts.base import EventData
from amana_contracts.provider import (
    ProviderReactivatedV1,
    ProviderRegisteredV1,
    ProviderSuspendedV1,
    ProviderUpdatedV1,
)
from amana_contracts.registry import HouseholdEnrolledV1

EVENTS: dict[str, list[type[EventData]]] = {
    "registry": [HouseholdEnrolledV1],
    "provider": [
        ProviderRegisteredV1,
        ProviderUpdatedV1,
        ProviderSuspendedV1,
        ProviderReactivatedV1,
    ],
}


def all_events() -> list[type[EventData]]:
    return [event for events in EVENTS.values() for event in events]


def payload_model(cloudevent_type: str) -> type[EventData] | None:
    return next((e for e in all_events() if e.cloudevent_type() == cloudevent_type), None)
