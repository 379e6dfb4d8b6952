"""aiokafka producer and consumer factories with Amana's delivery guarantees."""

from __future__ import annotations

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer

CONTENT_TYPE_HEADER = ("content-type", b"application/cloudevents+json")


def reliable_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    """acks=all + idempotence: a retried send is never written twice within a partition."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1_048_576,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
    )


def manual_commit_consumer(bootstrap: str, group_id: str, *topics: str) -> AIOKafkaConsumer:
    """Offsets are committed by the caller, only after its database transaction committed."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=500,
    )


async def kafka_is_reachable(bootstrap: str, timeout_s: float = 3.0) -> bool:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await client.bootstrap()
        return True
    except Exception:
        return False
    finally:
        await client.close()
