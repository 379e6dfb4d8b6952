"""aiokafka clients with Amana's delivery guarantees and the deployment's security settings.

Every producer, consumer and admin client is built here from one `KafkaConnection`, so TLS
and SASL (SCRAM) apply to all of them alike.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from amana_common.settings import KafkaSettings

CONTENT_TYPE_HEADER = ("content-type", b"application/cloudevents+json")


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and how to authenticate to them."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client takes for these settings."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs


def kafka_connection(settings: KafkaSettings) -> KafkaConnection:
    """TLS for SSL and SASL_SSL (the CA file, else the system's CAs; a client certificate when
    given); SCRAM credentials for SASL_PLAINTEXT and SASL_SSL."""
    protocol = settings.kafka_security_protocol
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = create_ssl_context(
            cafile=settings.kafka_ssl_ca_file or None,
            certfile=settings.kafka_ssl_cert_file or None,
            keyfile=settings.kafka_ssl_key_file or None,
        )
    sasl = protocol.startswith("SASL_")
    return KafkaConnection(
        bootstrap=settings.kafka_bootstrap,
        security_protocol=protocol,
        ssl_context=context,
        sasl_mechanism=settings.kafka_sasl_mechanism if sasl else None,
        sasl_username=settings.kafka_sasl_username if sasl else None,
        sasl_password=settings.kafka_sasl_password if sasl else None,
    )


def reliable_producer(
    connection: KafkaConnection, client_id: str, request_timeout_s: float = 10
) -> AIOKafkaProducer:
    """acks=all + idempotence: a retried send is never written twice within a partition.

    No linger: the relay hands over a whole wave before it waits, so a batch is as full at once
    as it would be later, and every wave would wait out the linger (5 ms cost a key with many
    events 5 ms per event)."""
    return AIOKafkaProducer(
        **connection.client_kwargs(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        max_batch_size=1_048_576,
        request_timeout_ms=int(request_timeout_s * 1000),
        retry_backoff_ms=200,
    )


def manual_commit_consumer(connection: KafkaConnection, group_id: str) -> AIOKafkaConsumer:
    """Offsets are committed by the caller, only after its database transaction committed.
    The caller subscribes (with its rebalance listener)."""
    return AIOKafkaConsumer(
        **connection.client_kwargs(),
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=500,
    )


def admin_client(connection: KafkaConnection, request_timeout_s: float = 15) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        **connection.client_kwargs(), request_timeout_ms=int(request_timeout_s * 1000)
    )


async def kafka_is_reachable(connection: KafkaConnection, timeout_s: float = 3.0) -> bool:
    """Whether a broker answers (and accepts our credentials) within `timeout_s`."""
    client = AIOKafkaClient(**connection.client_kwargs(), request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return True
    except Exception:
        return False
    finally:
        await client.close()
