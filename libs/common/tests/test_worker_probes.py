"""A worker run alone (`python -m <service> worker`) answers the probes Kubernetes sends."""

import httpx
from sqlalchemy.engine import make_url

from amana_common.cli import worker_probe_app
from amana_common.db import create_database
from amana_common.settings import ServiceSettings


async def test_probes_ask_the_workers_own_database_and_broker(
    postgres_server_url: str, kafka_bootstrap: str
) -> None:
    url = make_url(postgres_server_url).set(drivername="postgresql+asyncpg", database="postgres")
    settings = ServiceSettings(
        service_name="demo",
        environment="test",
        database_url=url.render_as_string(hide_password=False),
        kafka_bootstrap=kafka_bootstrap,
    )
    database = create_database(settings.database_url, pool_size=1)
    transport = httpx.ASGITransport(app=worker_probe_app(settings, database))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
            health = await client.get("/healthz")
            ready = await client.get("/readyz")
            metrics = await client.get("/metrics")
            docs = await client.get("/docs")
    finally:
        await database.dispose()

    assert health.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
    assert metrics.status_code == 200
    assert "python_info" in metrics.text
    assert docs.status_code == 404
