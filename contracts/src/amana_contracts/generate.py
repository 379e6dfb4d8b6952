"""Generates contracts/schemas/*.json and contracts/asyncapi.yaml from the pydantic models.

`make contracts` runs it; a test fails when the committed files differ from its output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from amana_contracts.catalog import EVENTS
from amana_contracts.envelope import CloudEvent, dead_letter_topic, topic_for

CONTRACTS_DIR = Path(__file__).resolve().parents[2]


def schema_file_name(event: Any) -> str:
    return f"{event.service}.{event.event_name}.v{event.event_version}.json"


def render_schemas() -> dict[str, str]:
    files = {"cloudevent.json": CloudEvent.model_json_schema()}
    for events in EVENTS.values():
        for event in events:
            schema = event.model_json_schema()
            schema["$id"] = f"urn:amana:event:{event.cloudevent_type()}"
            files[schema_file_name(event)] = schema
    return {name: json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in files.items()}


def _message(event: Any) -> dict[str, Any]:
    return {
        "name": event.cloudevent_type(),
        "title": event.event_name,
        "summary": (event.__doc__ or "").strip().split("\n")[0],
        "contentType": "application/cloudevents+json",
        "payload": {
            "allOf": [
                {"$ref": "#/components/schemas/CloudEventEnvelope"},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": event.cloudevent_type()},
                        "data": {"$ref": f"./schemas/{schema_file_name(event)}"},
                    },
                },
            ]
        },
    }


def render_asyncapi() -> str:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for service, events in EVENTS.items():
        channel_id = f"{service}Events"
        channel_messages = {}
        for event in events:
            key = f"{event.event_name}V{event.event_version}"
            messages[key] = _message(event)
            channel_messages[key] = {"$ref": f"#/components/messages/{key}"}
        channels[channel_id] = {
            "address": topic_for(service),
            "description": (
                f"Domain events of the {service} service. Kafka key = CloudEvents subject "
                f"(aggregate id). Messages that a consumer cannot handle go to "
                f"{dead_letter_topic(topic_for(service))} with the reason in the "
                f"'amana-dlq-reason' header."
            ),
            "messages": channel_messages,
        }
        operations[f"publish{service.capitalize()}Events"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [
                {"$ref": f"#/channels/{channel_id}/messages/{key}"} for key in channel_messages
            ],
        }
    document = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Amana domain events",
            "version": "1.0.0",
            "description": "CloudEvents 1.0 structured JSON messages published through each "
            "service's transactional outbox. Delivery is at-least-once, ordered per key.",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {"CloudEventEnvelope": {"$ref": "./schemas/cloudevent.json"}},
        },
    }
    return yaml.safe_dump(document, sort_keys=False, width=100)


def rendered_files() -> dict[Path, str]:
    files = {CONTRACTS_DIR / "schemas" / n: t for n, t in render_schemas().items()}
    files[CONTRACTS_DIR / "asyncapi.yaml"] = render_asyncapi()
    return files


def main() -> int:
    for path, text in rendered_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(CONTRACTS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
