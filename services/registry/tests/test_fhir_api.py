"""FHIR R4: Bundles of households (transaction and batch, Amana's and openIMIS's shapes, bad
FHIR named by entry and element), Group and Patient reads, the Group searchset with paging,
and bulk export."""

from __future__ import annotations

import json
from typing import Any

import httpx

from amana_common.db import Database
from amana_common.tables import outbox
from amana_common.testing.databases import row_count
from registry import fhir_service
from registry.models import Household

from .imports_support import fhir_lines, population

FHIR = {"content-type": "application/fhir+json"}
OI = "https://openimis.github.io/openimis_fhir_r4_ig"


def bundle(resources: list[dict[str, Any]], kind: str = "transaction") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['id']}" if r["resourceType"] != "Group" else None,
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for r in resources
        ],
    }


def openimis_family() -> list[dict[str, Any]]:
    """A family as openIMIS's FHIR R4 module writes it: a Group of insurees, the head marked
    by patient-is-head, identifiers typed by openIMIS's code system, the village in the
    address's location reference and postal code; a child linked to a RelatedPerson."""
    code = {"system": f"{OI}/CodeSystem/openimis-identifiers", "code": "Code"}
    uuid = {"system": f"{OI}/CodeSystem/openimis-identifiers", "code": "UUID"}
    address = {
        "use": "home",
        "type": "physical",
        "text": "Jetset zone 85",
        "postalCode": "KE-047-0101",
        "extension": [
            {
                "url": f"{OI}/StructureDefinition/address-location-reference",
                "valueReference": {"reference": "Location/8ed4eb0d-61ae-4022-8b4c-3076a619f957"},
            }
        ],
    }
    head = {
        "resourceType": "Patient",
        "id": "c1e5b1a2-0000-4000-8000-000000000001",
        "extension": [{"url": f"{OI}/StructureDefinition/patient-is-head", "valueBoolean": True}],
        "identifier": [
            {"type": {"coding": [uuid]}, "value": "c1e5b1a2-0000-4000-8000-000000000001"},
            {"type": {"coding": [code]}, "value": "070707070"},
        ],
        "name": [{"use": "usual", "family": "Wanjiru", "given": ["Grace"]}],
        "gender": "female",
        "birthDate": "1979-04-12",
        "telecom": [{"system": "phone", "value": "0712 345678"}],
        "address": [address],
    }
    child = {
        "resourceType": "Patient",
        "id": "c1e5b1a2-0000-4000-8000-000000000002",
        "identifier": [{"type": {"coding": [code]}, "value": "070707071"}],
        "name": [{"use": "usual", "family": "Wanjiru", "given": ["Peter"]}],
        "gender": "male",
        "birthDate": "2014-09-30",
        "link": [{"other": {"reference": "RelatedPerson/rp-child"}, "type": "seealso"}],
    }
    related = {
        "resourceType": "RelatedPerson",
        "id": "rp-child",
        "patient": {"reference": f"Patient/{head['id']}"},
        "relationship": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "SON"}
                ]
            }
        ],
    }
    group = {
        "resourceType": "Group",
        "id": "f0e5b1a2-0000-4000-8000-00000000000f",
        "extension": [
            {"url": f"{OI}/StructureDefinition/group-address", "valueAddress": address},
            {"url": f"{OI}/StructureDefinition/group-poverty-status", "valueBoolean": True},
        ],
        "identifier": [
            {"type": {"coding": [uuid]}, "value": "f0e5b1a2-0000-4000-8000-00000000000f"},
            {"type": {"coding": [code]}, "value": "070707070"},
        ],
        "active": True,
        "type": "person",
        "actual": True,
        "name": "Wanjiru",
        "quantity": 2,
        "member": [
            {"entity": {"reference": f"Patient/{head['id']}"}},
            {"entity": {"reference": f"Patient/{child['id']}"}},
        ],
    }
    return [group, head, child, related]


async def test_an_openimis_family_is_imported_as_a_household(
    client: httpx.AsyncClient, database: Database
) -> None:
    response = await client.post("/fhir", json=bundle(openimis_family()), headers=FHIR)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 4
    household_id = answer["entry"][0]["response"]["location"].removeprefix("Group/")
    household = (await client.get(f"/households/{household_id}")).json()
    assert household["location_code"] == "KE-047-0101"
    assert household["address"] == "Jetset zone 85"
    members = [
        (m["given_name"], m["relationship"], m["is_head"], m["phone"], m["identifiers"])
        for m in household["members"]
    ]
    assert members == [
        (
            "Grace",
            "head",
            True,
            "+254712345678",
            [{"scheme": "social_registry_id", "value": "070707070"}],
        ),
        ("Peter", "child", False, None, [{"scheme": "social_registry_id", "value": "070707071"}]),
    ]

    again = await client.post(
        "/fhir", json=bundle(openimis_family()), headers=FHIR, params={"source": "fhir"}
    )
    assert again.json()["entry"][0]["response"]["status"] == "200 OK"
    assert await row_count(database, Household.__table__) == 1


async def test_a_transaction_with_bad_fhir_writes_nothing_and_names_entry_and_field(
    client: httpx.AsyncClient, database: Database
) -> None:
    good = fhir_lines(population(1, seed=31))
    bad = fhir_lines(population(1, seed=32))
    bad[1]["birthDate"] = "2999-01-01"
    stray = {"resourceType": "Patient", "id": "stray", "birthDate": "1990-01-01"}
    broken = fhir_lines(population(1, seed=33))
    broken[0]["member"][0]["entity"]["reference"] = "Patient/missing"

    response = await client.post("/fhir", json=bundle([*good, *bad, stray, *broken]), headers=FHIR)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = {(e["entry"], e["code"]) for e in response.json()["errors"]}
    offset = len(good)
    assert (offset, "birth-date-in-future") in errors
    assert (offset + len(bad), "in-no-group") in errors
    assert (offset + len(bad) + 1, "broken-reference") in errors
    fields = [e["field"] for e in response.json()["errors"]]
    assert f"Patient/{bad[1]['id']}.birthDate" in fields
    assert await row_count(database, Household.__table__) == 0
    assert await row_count(database, outbox) == 0


async def test_wrong_resource_types_and_missing_required_elements_are_422(
    client: httpx.AsyncClient,
) -> None:
    observation = bundle([{"resourceType": "Observation", "id": "o1", "status": "final"}])
    not_bundle = {"resourceType": "Group", "id": "g"}
    resources = fhir_lines(population(1, seed=34))
    del resources[0]["type"]

    wrong = await client.post("/fhir", json=observation, headers=FHIR)
    group = await client.post("/fhir", json=not_bundle, headers=FHIR)
    missing = await client.post("/fhir", json=bundle(resources), headers=FHIR)
    malformed = await client.post("/fhir", content=b"{", headers=FHIR)

    assert (
        wrong.status_code == 422
        and wrong.json()["errors"][0]["field"] == "entry[0].resource.resourceType"
    )
    assert group.status_code == 422 and group.json()["errors"][0]["field"] == "resourceType"
    assert missing.status_code == 422
    assert any(e["field"].endswith(".type") for e in missing.json()["errors"])
    assert malformed.status_code == 400


async def test_a_batch_answers_each_entry_with_its_outcome(
    client: httpx.AsyncClient, database: Database
) -> None:
    good = fhir_lines(population(1, seed=35))
    bad = fhir_lines(population(1, seed=36))
    bad[0]["member"][0]["extension"][0]["valueCode"] = "spouse"  # no head

    response = await client.post("/fhir", json=bundle([*good, *bad], "batch"), headers=FHIR)

    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    refused = entries[len(good)]["response"]
    assert refused["status"].startswith("422")
    assert refused["outcome"]["resourceType"] == "OperationOutcome"
    assert refused["outcome"]["issue"][0]["expression"] == [f"Group/{bad[0]['id']}.member"]
    assert await row_count(database, Household.__table__) == 1


async def test_groups_and_patients_are_read_searched_and_paged(client: httpx.AsyncClient) -> None:
    for seed in (41, 42, 43):
        await client.post("/fhir", json=bundle(fhir_lines(population(1, seed=seed))), headers=FHIR)
    first = await client.get("/fhir/Group", params={"_count": 2, "_lastUpdated": "gt2020-01-01"})
    assert first.status_code == 200
    page = first.json()
    assert page["type"] == "searchset" and len(page["entry"]) == 2
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    second = (await client.get(next_url)).json()
    assert len(second["entry"]) == 1
    assert not any(link["relation"] == "next" for link in second["link"])
    group = page["entry"][0]["resource"]
    read = await client.get(f"/fhir/Group/{group['id']}")
    assert read.json() == group
    patient_id = group["member"][0]["entity"]["reference"].removeprefix("Patient/")
    patient = (await client.get(f"/fhir/Patient/{patient_id}")).json()
    assert patient["resourceType"] == "Patient" and patient["id"] == patient_id
    state = group["extension"][0]["valueCode"][:6]
    by_state = (await client.get("/fhir/Group", params={"address-state": state})).json()
    assert group["id"] in [e["resource"]["id"] for e in by_state["entry"]]
    later = (await client.get("/fhir/Group", params={"_lastUpdated": "gt2999-01-01"})).json()
    assert later["entry"] == []
    assert (await client.get("/fhir/Group/01930000-0000-7000-8000-000000000001")).status_code == 404


async def test_bulk_export_kick_off_status_and_files(
    client: httpx.AsyncClient, database: Database
) -> None:
    await client.post("/fhir", json=bundle(fhir_lines(population(2, seed=44))), headers=FHIR)
    refused = await client.get("/fhir/$export")
    kick_off = await client.get("/fhir/$export", headers={"Prefer": "respond-async"})
    assert refused.status_code == 422
    assert kick_off.status_code == 202
    status_url = kick_off.headers["content-location"]
    assert (await client.get(status_url)).status_code == 202

    assert await fhir_service.run_exports(database, "test-worker")

    manifest = (await client.get(status_url)).json()
    counts = {item["type"]: item["count"] for item in manifest["output"]}
    assert counts["Group"] == 2
    for item in manifest["output"]:
        lines = (await client.get(item["url"])).text.splitlines()
        assert len(lines) == item["count"]
        assert {json.loads(line)["resourceType"] for line in lines} == {item["type"]}
