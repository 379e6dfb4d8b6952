"""Helpers of the import tests: generated files, an in-process worker, job polling."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx

from amana_common.db import Database
from registry.generate import (
    GeneratedHousehold,
    Generator,
    GeneratorConfig,
    fhir_resources,
    write_csv,
)
from registry.imports import ApplyContext, ImportSettings, ImportWorker
from registry.reference import cleaning_rules, load_locations
from registry.settings import REFERENCE, RegistrySettings

RULES = cleaning_rules(RegistrySettings(environment="test"))
CSV = {"content-type": "text/csv"}
NDJSON = {"content-type": "application/fhir+ndjson"}


def population(
    households: int, seed: int = 11, duplicate_rate: float = 0.0
) -> list[GeneratedHousehold]:
    config = GeneratorConfig(households=households, seed=seed, duplicate_rate=duplicate_rate)
    return list(Generator(config, load_locations(REFERENCE / "locations_ke.csv")).households())


def csv_file(households: list[GeneratedHousehold]) -> str:
    out = io.StringIO()
    write_csv(households, out)
    return out.getvalue()


def fhir_lines(households: list[GeneratedHousehold]) -> list[dict[str, Any]]:
    return [resource for household in households for resource in fhir_resources(household)]


def ndjson(resources: list[Any]) -> str:
    return "".join(
        (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in resources
    )


def worker(database: Database, chunk_size: int = 7, lease_s: float = 30.0) -> ImportWorker:
    return ImportWorker(
        database, ApplyContext(RULES, "KES", "import-test"), ImportSettings(chunk_size, lease_s)
    )


async def run_import(
    client: httpx.AsyncClient, database: Database, body: str, headers: dict[str, str], **params: str
) -> dict[str, Any]:
    """Uploads, runs the worker in-process until the queue is empty, answers the job."""
    started = await client.post("/imports", content=body.encode(), headers=headers, params=params)
    assert started.status_code == 202, started.text
    runner = worker(database)
    while await runner.run_once():
        pass
    job = await client.get(started.headers["location"])
    assert job.status_code == 200, job.text
    return dict(job.json())


async def report(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/imports/{job_id}/report")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]
