"""With tracing on, an event continues the trace of the request that wrote it, over the real
broker: the outbox relay's producer span is the child of the request's server span (the
CloudEvent's traceparent), and the consumer's span, the child of the producer's (the record's
traceparent header), holds the handler's statements."""

import json
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.trace import SpanKind

from amana_common.auth import Role
from amana_common.consumers import event_consumer
from amana_common.db import Database, create_database
from amana_common.kafka import KafkaConnection, admin_client
from amana_common.outbox import OutboxRelay
from amana_common.testing.clients import TopicReader, eventually, running, service_client
from amana_common.testing.service import bearer
from amana_common.testing.tracing import Trace, is_child, recorded_spans, statement
from amana_common.tracing import traceparent_of
from provider.main import create_provider_app
from provider.settings import ProviderSettings
from registry.consumers import HANDLERS
from registry.settings import RegistrySettings

from .test_provider_events import PROVIDER

CALLER_TRACE = "5b8efff798038103d269b633813fc60c"
CALLER_SPAN = "eee19b7ec3c1b174"
TOPIC = "provider.events"


async def group_at_end(bootstrap: str, group: str, topic: str) -> None:
    """Commits `group`'s offsets at `topic`'s end: its consumer sees only what comes next, one
    record at a time (a run of older ones would be applied, and traced, together)."""
    admin = admin_client(KafkaConnection(bootstrap))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def test_an_event_continues_the_trace_of_the_request_that_wrote_it(
    provider_url: str,
    provider_db: Database,
    registry_url: str,
    registry_db: Database,
    kafka_bootstrap: str,
) -> None:
    group = f"tracing-test-{uuid4().hex[:12]}"
    await group_at_end(kafka_bootstrap, group, TOPIC)
    provider_settings = ProviderSettings(
        database_url=provider_url,
        kafka_bootstrap=kafka_bootstrap,
        environment="test",
        allowed_api_hosts=["*.psp.example"],
    )
    registry_settings = RegistrySettings(
        database_url=registry_url, kafka_bootstrap=kafka_bootstrap, environment="test"
    )
    with recorded_spans() as exporter:
        provider, registry = create_database(provider_url), create_database(registry_url)
        relay = OutboxRelay("provider", provider.sessionmaker, KafkaConnection(kafka_bootstrap))
        consumer = event_consumer(registry_settings, registry, group, HANDLERS)
        try:
            async with (
                service_client(create_provider_app(provider_settings), provider) as client,
                TopicReader(kafka_bootstrap, TOPIC) as reader,
                running(relay, consumer),
            ):
                created = await client.post(
                    "/providers",
                    json=PROVIDER | {"code": "TRACED-KE"},
                    headers=bearer(provider_settings, Role.finance)
                    | {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
                )
                assert created.status_code == 201, created.text
                key = created.json()["id"].encode()
                records = await reader.read_until(lambda rs: any(r.key == key for r in rs))

                def consumed() -> bool:
                    return "process provider.events" in Trace.of(exporter, CALLER_TRACE).names()

                await eventually(consumed, timeout_s=60)
        finally:
            await provider.dispose()
            await registry.dispose()

    spans = Trace.of(exporter, CALLER_TRACE)
    request = spans.named("POST /providers", SpanKind.SERVER)
    publish = spans.named(f"publish {TOPIC}", SpanKind.PRODUCER)
    process = spans.named(f"process {TOPIC}", SpanKind.CONSUMER)
    assert request.parent is not None and f"{request.parent.span_id:016x}" == CALLER_SPAN
    assert is_child(publish, request), "the relay publishes in the trace that wrote the event"
    assert is_child(process, publish), "the consumer continues the producer's span"

    [record] = [r for r in records if r.key == key]
    assert json.loads(record.value)["traceparent"] == traceparent_of(request.get_span_context())
    assert dict(record.headers)["traceparent"].decode() == traceparent_of(
        publish.get_span_context()
    )
    assert publish.attributes is not None and process.attributes is not None
    assert publish.attributes["cloudevents.event_type"] == "amana.provider.ProviderRegistered.v1"
    assert process.attributes["messaging.consumer.group.name"] == group
    assert process.attributes["amana.consumer.outcome"] == "applied"
    assert process.attributes["messaging.message.id"] == publish.attributes["messaging.message.id"]

    handled = [statement(span) for span in spans.statements(process)]
    assert any(s.startswith("INSERT INTO processed_events") for s in handled), handled
    assert any("projected_providers" in s for s in handled), handled
    assert any(
        s.startswith("INSERT INTO outbox") for s in map(statement, spans.statements(request))
    )
