"""Base class of event payloads: each payload names its service, event name and version."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from amana_contracts.envelope import event_type


class EventData(BaseModel):
    """The `data` of one event type. Within a version only additive changes are allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: ClassVar[str]
    event_name: ClassVar[str]
    event_version: ClassVar[int] = 1

    @classmethod
    def cloudevent_type(cls) -> str:
        return event_type(cls.service, cls.event_name, cls.event_version)

    def subject(self) -> str:
        """The aggregate id the event is about; used as CloudEvents subject and Kafka key."""
        raise NotImplementedError
