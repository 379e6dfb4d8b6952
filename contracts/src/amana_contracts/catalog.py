"""Every event type Amana publishes, per service topic."""

from __future__ import annotations

from amana_contracts.base import EventData
from amana_contracts.disbursement import (
    PaymentFailedV1,
    PaymentReversedV1,
    PaymentSettledV1,
    PayrollReconciledV1,
)
from amana_contracts.payroll import (
    PayrollApprovedV1,
    PayrollGeneratedV1,
    PayrollRejectedV1,
    ProgrammeCreatedV1,
    ProgrammeUpdatedV1,
)
from amana_contracts.provider import (
    ProviderReactivatedV1,
    ProviderRegisteredV1,
    ProviderSuspendedV1,
    ProviderUpdatedV1,
)
from amana_contracts.registry import (
    DuplicateFlaggedV1,
    DuplicateReviewedV1,
    HouseholdEnrolledV1,
    HouseholdStatusChangedV1,
    HouseholdUpdatedV1,
)

EVENTS: dict[str, list[type[EventData]]] = {
    "registry": [
        HouseholdEnrolledV1,
        HouseholdUpdatedV1,
        HouseholdStatusChangedV1,
        DuplicateFlaggedV1,
        DuplicateReviewedV1,
    ],
    "provider": [
        ProviderRegisteredV1,
        ProviderUpdatedV1,
        ProviderSuspendedV1,
        ProviderReactivatedV1,
    ],
    "payroll": [
        ProgrammeCreatedV1,
        ProgrammeUpdatedV1,
        PayrollGeneratedV1,
        PayrollApprovedV1,
        PayrollRejectedV1,
    ],
    "disbursement": [
        PaymentSettledV1,
        PaymentFailedV1,
        PaymentReversedV1,
        PayrollReconciledV1,
    ],
}


def all_events() -> list[type[EventData]]:
    return [event for events in EVENTS.values() for event in events]


def payload_model(cloudevent_type: str) -> type[EventData] | None:
    return next((e for e in all_events() if e.cloudevent_type() == cloudevent_type), None)
