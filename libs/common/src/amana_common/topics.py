"""Creates the Kafka topics every service publishes to, with their dead-letter topics.

`python -m amana_common.topics --bootstrap 127.0.0.1:59092` is idempotent. The replication
factor, `min.insync.replicas` and the client's TLS/SASL settings come from `AMANA_KAFKA_*`
(see `KafkaSettings`); production refuses a factor of 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from amana_common.catalog import load_catalog
from amana_common.kafka import KafkaConnection, admin_client, kafka_connection
from amana_common.settings import KafkaSettings, TopicReplication
from amana_contracts.envelope import dead_letter_topic

SINGLE_BROKER = TopicReplication(replication_factor=1, min_insync_replicas=1)


def amana_topics() -> list[str]:
    """The topics of the service catalog (what services publish), with their dead letters."""
    topics = load_catalog().published_topics()
    return topics + [dead_letter_topic(topic) for topic in topics]


def new_topic(name: str, partitions: int, replication: TopicReplication) -> NewTopic:
    return NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=replication.replication_factor,
        topic_configs={"min.insync.replicas": str(replication.min_insync_replicas)},
    )


async def ensure_topics(
    connection: KafkaConnection,
    topics: list[str],
    partitions: int = 6,
    replication: TopicReplication = SINGLE_BROKER,
) -> list[str]:
    """Creates the topics that do not exist yet; answers the names it created."""
    admin = admin_client(connection)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([new_topic(t, partitions, replication) for t in missing])
        return missing
    finally:
        await admin.close()


async def ensure_topics_when_ready(
    connection: KafkaConnection,
    topics: list[str],
    partitions: int,
    replication: TopicReplication,
    wait_s: float,
) -> list[str]:
    """Retries until the broker answers (it may still be starting) or `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await ensure_topics(connection, topics, partitions, replication)
        except Exception as error:
            if time.monotonic() > deadline:
                message = (
                    f"Kafka at {connection.bootstrap} did not answer within {wait_s}s: {error!r}"
                )
                raise SystemExit(message) from error
            await asyncio.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", help="default: AMANA_KAFKA_BOOTSTRAP")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the broker")
    args = parser.parse_args(argv)
    overrides = {"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}
    settings = KafkaSettings(**overrides)
    replication = settings.topic_replication()
    created = asyncio.run(
        ensure_topics_when_ready(
            kafka_connection(settings), amana_topics(), args.partitions, replication, args.wait
        )
    )
    print(
        f"topics ready ({len(created)} created, replication factor "
        f"{replication.replication_factor}, min.insync.replicas "
        f"{replication.min_insync_replicas}): {', '.join(amana_topics())}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
