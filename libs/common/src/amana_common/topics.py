"""Creates the Kafka topics every service publishes to, with their dead-letter topics.

`python -m amana_common.topics --bootstrap 127.0.0.1:59092` is idempotent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from amana_common.catalog import load_catalog
from amana_contracts.envelope import dead_letter_topic


def amana_topics() -> list[str]:
    """The topics of the service catalog (what services publish), with their dead letters."""
    topics = load_catalog().published_topics()
    return topics + [dead_letter_topic(topic) for topic in topics]


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 6) -> list[str]:
    """Creates the topics that do not exist yet; answers the names it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        return missing
    finally:
        await admin.close()


async def ensure_topics_when_ready(
    bootstrap: str, topics: list[str], partitions: int, wait_s: float
) -> list[str]:
    """Retries until the broker answers (it may still be starting) or `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await ensure_topics(bootstrap, topics, partitions)
        except Exception as error:
            if time.monotonic() > deadline:
                message = f"Kafka at {bootstrap} did not answer within {wait_s}s: {error!r}"
                raise SystemExit(message) from error
            await asyncio.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the broker")
    args = parser.parse_args(argv)
    created = asyncio.run(
        ensure_topics_when_ready(args.bootstrap, amana_topics(), args.partitions, args.wait)
    )
    print(f"topics ready ({len(created)} created): {', '.join(amana_topics())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
