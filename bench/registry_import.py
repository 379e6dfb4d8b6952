"""FHIR NDJSON import of 100,000 households (about half a million resources) with duplicate
checks on: >= 2,000 resources/s end to end, from the upload's first byte to the job done.

A fresh `amana_registry_importbench` database is migrated; the synthetic population generator
writes the households as FHIR NDJSON (a Group and its Patients each); the registry API and its
worker run as real processes (uvicorn; the worker with its outbox relay to Kafka and the
import runner, which calls the duplicate check for every chunk); the file is streamed to
`POST /imports` and the job polled until done. Before the run, the CPU each resource costs is
measured in-process on a sample (fhir.resources validation, reading and cleaning); during
the run the machine's load average is sampled, and the CPU the worker, the API and
PostgreSQL spent is read from /proc: all are printed with the figure, so that a run on a
shared, loaded machine can still be judged by the CPU each resource cost.

    make bench-registry-import   # or: uv run python bench/registry_import.py --households 100000
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import uvloop
from _common import at_least, local_servers, postgres_server_url, report, tree_cpu_seconds

from amana_common.auth import Role, issue_token
from amana_common.settings import ServiceSettings
from amana_common.testing.clients import free_port
from amana_common.testing.databases import migrated_test_database
from registry.fhir import validation_refusals
from registry.generate import Generator, GeneratorConfig, fhir_resources
from registry.import_records import fhir_record
from registry.reference import cleaning_rules, load_locations
from registry.settings import REFERENCE, RegistrySettings

REPO = Path(__file__).resolve().parents[1]
SERVICE_DIR = REPO / "services" / "registry"
BAR = 2000.0
SECRET = secrets.token_urlsafe(32)  # generated: a committed secret is refused
PORT = free_port()


def kafka_bootstrap() -> str:
    return (
        os.environ.get("AMANA_KAFKA_BOOTSTRAP")
        or subprocess.run(
            [str(REPO / "deploy" / "local" / "kafka.sh"), "bootstrap"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )


def write_file(households: int, path: Path) -> int:
    config = GeneratorConfig(households=households, seed=5)
    generator = Generator(config, load_locations(REFERENCE / "locations_ke.csv"))
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for household in generator.households():
            for resource in fhir_resources(household):
                out.write(json.dumps(resource, ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1
    return count


def profile(path: Path, sample: int = 2000) -> None:
    """CPU per resource on a sample, in this process: fhir.resources validation alone, then
    the whole reading (validation, mapping, cleaning) of a household."""
    rules = cleaning_rules(RegistrySettings(environment="test"))
    groups: list[list[dict[str, object]]] = []
    with path.open(encoding="utf-8") as source:
        for line in source:
            resource = json.loads(line)
            if resource["resourceType"] == "Group":
                if len(groups) == sample:
                    break
                groups.append([])
            groups[-1].append(resource)
    resources = sum(len(g) for g in groups)
    started = time.process_time()
    for group in groups:
        for resource in group:
            validation_refusals(resource)
    validation = time.process_time() - started
    started = time.process_time()
    today = time.gmtime()
    for position, group in enumerate(groups):
        by_reference = {f"Patient/{r['id']}": r for r in group[1:]}
        fhir_record(
            position,
            position,
            group[0],
            by_reference.get,
            group[1:],
            rules,
            date(today.tm_year, today.tm_mon, today.tm_mday),
        )
    whole = time.process_time() - started
    print(
        f"CPU per resource (sample of {resources} resources in {len(groups)} households): "
        f"fhir.resources validation {validation / resources * 1e6:.0f} µs, validation + "
        f"mapping + cleaning {whole / resources * 1e6:.0f} µs "
        f"(one core's ceiling for that part alone: {resources / whole:,.0f} resources/s)"
    )


def start(command: str, url: str, log_name: str, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "REGISTRY_DATABASE_URL": url,
        "REGISTRY_KAFKA_BOOTSTRAP": kafka_bootstrap(),
        "REGISTRY_JWT_SECRET": SECRET,
        "REGISTRY_ENVIRONMENT": "test",
        "REGISTRY_LOG_LEVEL": "WARNING",
        **extra,
    }
    log = open(REPO / ".local" / log_name, "w")  # noqa: SIM115
    arguments = [sys.executable, "-m", "registry", command]
    if command == "api":
        arguments += ["--port", str(PORT)]
    return subprocess.Popen(arguments, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for_api(api: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise SystemExit("the registry API exited; see .local/bench-registry-import-api.log")
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit("the registry API did not answer")


async def chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(1024 * 1024):
            yield block


@dataclass
class Timeline:
    """When the upload was stored, when staging ended, and the load average, sampled."""

    uploaded: float = 0.0
    staged: float = 0.0
    loads: list[float] = field(default_factory=list)


async def run(path: Path) -> tuple[dict[str, object], float, Timeline]:
    token = issue_token(
        ServiceSettings(jwt_secret=SECRET, environment="test"), "bench-importer", [Role.registrar]
    )
    headers = {"Authorization": f"Bearer {token}"}
    timeline = Timeline()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", timeout=600) as client:
        started = time.monotonic()
        response = await client.post(
            "/imports",
            content=chunks(path),
            headers=headers | {"content-type": "application/fhir+ndjson"},
            params={"source": "bench"},
        )
        if response.status_code != 202:
            raise SystemExit(f"upload refused: {response.status_code} {response.text[:500]}")
        timeline.uploaded = time.monotonic() - started
        location = response.headers["location"]
        while True:
            job = (await client.get(location, headers=headers)).json()
            timeline.loads.append(os.getloadavg()[0])
            if job["phase"] != "stage" and not timeline.staged:
                timeline.staged = time.monotonic() - started
            if job["status"] in ("done", "failed"):
                return job, time.monotonic() - started, timeline
            await asyncio.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--households", type=int, default=100_000)
    arguments = parser.parse_args()
    (REPO / ".local").mkdir(exist_ok=True)
    path = REPO / ".local" / "bench-registry-import.ndjson"
    started = time.monotonic()
    resources = write_file(arguments.households, path)
    print(
        f"generated {arguments.households:,} households as {resources:,} FHIR resources "
        f"({path.stat().st_size / 2**20:.0f} MiB) in {time.monotonic() - started:.0f}s"
    )
    profile(path)
    url = uvloop.run(
        migrated_test_database(postgres_server_url(), "registry", SERVICE_DIR, "importbench")
    )
    api = start("api", url, "bench-registry-import-api.log", {})
    worker = start(
        "worker", url, "bench-registry-import-worker.log", {"REGISTRY_IMPORT_CHUNK_SIZE": "1000"}
    )
    postgres = local_servers().get("PostgreSQL")
    try:
        wait_for_api(api)
        before = [tree_cpu_seconds(pid) if pid else 0.0 for pid in (worker.pid, api.pid, postgres)]
        job, elapsed, timeline = uvloop.run(run(path))
        after = [tree_cpu_seconds(pid) if pid else 0.0 for pid in (worker.pid, api.pid, postgres)]
    finally:
        for child in (api, worker):
            child.terminate()
            child.wait(timeout=30)
    rate = resources / elapsed
    loads = timeline.loads
    spent = [
        f"{name} {end - start:.0f} s ({(end - start) / resources * 1e6:.0f} µs/resource)"
        for name, start, end in zip(
            ("the worker (with its pool)", "the API", "PostgreSQL"), before, after, strict=True
        )
        if name != "PostgreSQL" or postgres
    ]
    wired = importlib.util.find_spec("registry.duplicates") is not None
    passed = report(
        f"registry FHIR NDJSON import, {arguments.households:,} households",
        rate,
        "resources/s",
        at_least(BAR),
        ok=job["status"] == "done" and wired,
        detail=(
            f"{resources:,} resources in {elapsed:.0f} s job start to done, duplicate checks "
            f"{'on' if wired else 'NOT WIRED'}; job {job['status']}: created {job['created']}, "
            f"updated {job['updated']}, rejected {job['rejected']}, flagged {job['flagged']}; "
            f"load mean {sum(loads) / len(loads):.1f}, max {max(loads):.1f} on "
            f"{os.cpu_count()} cores"
        ),
    )
    print(
        f"upload stored at {timeline.uploaded:.0f} s, staged at {timeline.staged:.0f} s; "
        f"CPU spent: {', '.join(spent)}"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
