"""Request and response bodies of the duplicate review and batch run API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from amana_common.validation import Id, Omittable, RequestBody, Text
from registry.matching import (
    Decision,
    DecisionRequest,
    DuplicateAction,
    FlagSource,
    FlagStatus,
    RunStatus,
)
from registry.schemas import HouseholdOut

MAX_BULK_DECISIONS = 100
Note = Annotated[str, Text(min_length=1, max_length=500, multiline=True)]


# The shape `matching.outcome` checks, stated: a duplicate says what to do with the other
# household; not_duplicate takes neither an action nor a surviving household.
DECISION_SHAPE: dict[str, Any] = {
    "oneOf": [
        {"properties": {"decision": {"const": "duplicate"}}, "required": ["action"]},
        {
            "properties": {
                "decision": {"const": "not_duplicate"},
                "action": False,
                "surviving_household_id": False,
            }
        },
    ]
}


class DecisionIn(RequestBody):
    model_config = ConfigDict(json_schema_extra=DECISION_SHAPE)

    decision: Decision = Field(
        description="`not_duplicate` (remembered: the pair is never flagged again) or `duplicate`"
    )
    action: Omittable[DuplicateAction] = Field(
        default=None,
        description="For a duplicate: `merge` the other household into the surviving one, or "
        "`exit` the other",
    )
    surviving_household_id: Omittable[Id] = Field(
        default=None, description="For a duplicate: which of the two stays (default the older)"
    )
    note: Omittable[Note] = None

    def request(self) -> DecisionRequest:
        return DecisionRequest(self.decision, self.action, self.surviving_household_id)


class BulkDecisionItem(DecisionIn):
    flag_id: Id


class BulkDecisionsIn(RequestBody):
    decisions: list[BulkDecisionItem] = Field(min_length=1, max_length=MAX_BULK_DECISIONS)


class FlagOut(BaseModel):
    """A flag without personal data: ids, numbers, score and reasons."""

    model_config = ConfigDict(from_attributes=True)

    id: UUID
    household_id: UUID
    household_number: str | None = None
    other_household_id: UUID
    other_household_number: str | None = None
    status: FlagStatus
    score: float
    reasons: list[str]
    location_code: str
    source: FlagSource
    flagged_at: datetime
    flagged_by: str | None
    decided_at: datetime | None
    decided_by: str | None
    note: str | None
    surviving_household_id: UUID | None
    version: int


class FlagDetailOut(FlagOut):
    """A flag with its comparison (which fields agreed and how) and both households side by
    side (personal data: audited by id, never logged)."""

    comparison: dict[str, Any]
    household: HouseholdOut
    other_household: HouseholdOut


class BulkDecisionsOut(BaseModel):
    items: list[FlagOut]


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    status: RunStatus
    phase: str | None
    requested_by: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    pairs_total: int = Field(description="Candidate pairs found by blocking")
    pairs_scored: int
    flags_created: int
    blocks_skipped: int = Field(
        description="Blocking keys held by too many households to say anything"
    )
    error: str | None
