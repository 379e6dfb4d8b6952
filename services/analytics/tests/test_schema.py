"""Its migrations build exactly the tables its models describe; it answers its liveness probe."""

import httpx

from amana_common.testing.schema import schema_differences
from analytics.models import Base


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    assert await schema_differences(database_url, Base.metadata) == []


async def test_it_answers_its_liveness_probe(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
