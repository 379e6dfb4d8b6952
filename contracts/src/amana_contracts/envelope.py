"""CloudEvents 1.0 structured-mode envelope shared by every Amana event."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

TYPE_PATTERN = re.compile(r"^amana\.[a-z_]+\.[A-Za-z]+\.v[1-9][0-9]*$")
SOURCE_PATTERN = re.compile(r"^amana/[a-z_]+$")
TRACEPARENT_PATTERN = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 JSON message. `subject` is the aggregate id and the Kafka key."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: UUID
    source: str = Field(pattern=SOURCE_PATTERN.pattern, examples=["amana/registry"])
    type: str = Field(
        pattern=TYPE_PATTERN.pattern, examples=["amana.registry.HouseholdEnrolled.v1"]
    )
    time: datetime
    subject: str = Field(min_length=1, max_length=200)
    traceparent: str | None = Field(default=None, pattern=TRACEPARENT_PATTERN.pattern)
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    @field_validator("time")
    @classmethod
    def _time_is_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must be timezone-aware")
        return value.astimezone(UTC)

    @property
    def service(self) -> str:
        return self.type.split(".")[1]

    @property
    def name(self) -> str:
        return self.type.split(".")[2]

    @property
    def version(self) -> int:
        return int(self.type.rsplit(".v", 1)[1])


def event_type(service: str, name: str, version: int) -> str:
    return f"amana.{service}.{name}.v{version}"


def topic_for(service: str) -> str:
    return f"{service}.events"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"
