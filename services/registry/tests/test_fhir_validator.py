"""What the registry serves as FHIR is valid R4 under the official HL7 validator engine
(org.hl7.fhir.validation through HAPI's FhirInstanceValidator, base R4 profiles, offline):
a Group, its Patients, a searchset Bundle, a batch-response Bundle and bulk export NDJSON."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx

from amana_common.db import Database
from registry import fhir_service

from .imports_support import fhir_lines, population
from .test_fhir_api import FHIR, bundle, openimis_family

VALIDATOR = (
    Path(__file__).resolve().parents[3] / "deploy" / "tools" / "fhir-validator" / "validate.sh"
)


async def test_served_fhir_has_no_error_under_the_official_validator(
    client: httpx.AsyncClient, database: Database, tmp_path: Path
) -> None:
    documents: dict[str, object] = {}
    batch = await client.post(
        "/fhir", json=bundle(fhir_lines(population(3, seed=51)), "batch"), headers=FHIR
    )
    await client.post("/fhir", json=bundle(openimis_family()), headers=FHIR)
    documents["batch-response.json"] = batch.json()
    search = (await client.get("/fhir/Group", params={"_count": 2})).json()
    documents["searchset.json"] = search
    group = search["entry"][0]["resource"]
    documents["group.json"] = (await client.get(f"/fhir/Group/{group['id']}")).json()
    patient = group["member"][0]["entity"]["reference"]
    documents["patient.json"] = (await client.get(f"/fhir/{patient}")).json()
    kick_off = await client.get("/fhir/$export", headers={"Prefer": "respond-async"})
    await fhir_service.run_exports(database, "test-worker")
    manifest = (await client.get(kick_off.headers["content-location"])).json()
    files = []
    for name, document in documents.items():
        (tmp_path / name).write_text(json.dumps(document), encoding="utf-8")
        files.append(tmp_path / name)
    for item in manifest["output"]:
        path = tmp_path / f"export-{item['type']}.ndjson"
        path.write_text((await client.get(item["url"])).text, encoding="utf-8")
        files.append(path)

    result = await asyncio.to_thread(
        subprocess.run,
        [str(VALIDATOR), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=900,
    )

    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert summary.startswith("validated ") and ": 0 errors," in summary, summary
    assert int(summary.split()[1]) >= 4 + 3 + 8, summary  # every document and exported line
