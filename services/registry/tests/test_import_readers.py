"""The import's reading in reader processes and its rows built without ORM objects give what
the in-process reading and the service's own enrolment give: same records (errors, cleaning
changes, drafts), same history document, same event snapshot."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from typing import Any

from uuid6 import uuid7

from registry import import_rows, service
from registry.import_readers import Readers, csv_wire_records, fhir_wire_records
from registry.import_records import Record, fhir_record, from_wire
from registry.models import PaymentPreference
from registry.reference import RulesSource
from registry.settings import RegistrySettings

from .imports_support import RULES, csv_file, fhir_lines, population

TODAY = date(2026, 6, 1)


def _chunk() -> tuple[list[tuple[int, int, str]], dict[str, str]]:
    """Groups (position, line, JSON) and what they reference, with bad records among them: a
    birth date in the future, a member that is not an object, a Patient missing."""
    resources = fhir_lines(population(6, seed=31))
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    patients[0]["birthDate"] = "2090-01-01"
    groups = [r for r in resources if r["resourceType"] == "Group"]
    groups[1]["member"] = [1]
    groups[2]["member"].append({"entity": {"reference": "Patient/nowhere"}})
    staged = {
        f"{r['resourceType']}/{r['id']}": json.dumps(r)
        for r in resources
        if r["resourceType"] != "Group"
    }
    return [(index, index + 1, json.dumps(g)) for index, g in enumerate(groups)], staged


async def test_reader_processes_read_records_as_the_workers_own_process_does() -> None:
    groups, staged = _chunk()
    here = Readers(RULES)
    pool = Readers(RULES, RulesSource.of(RegistrySettings(environment="test")), processes=2)
    try:
        in_process = await here.run_sliced(fhir_wire_records, groups, staged, TODAY)
        in_pool = await pool.run_sliced(fhir_wire_records, groups, staged, TODAY)
    finally:
        pool.close()

    assert pool.slices == 2
    assert in_pool == in_process
    records = [from_wire(wire) for wire in in_pool]
    assert [r.accepted for r in records] == [False, False, False, True, True, True]
    assert "birth-date-in-future" in {e["code"] for e in records[0].errors}
    assert records[3].draft is not None and records[3].changes is not None


def test_a_record_crosses_between_processes_unchanged() -> None:
    groups, staged = _chunk()
    resources = {reference: json.loads(text) for reference, text in staged.items()}
    for position, line, text in groups:
        group = json.loads(text)
        refs = [m["entity"]["reference"] for m in group["member"] if isinstance(m, dict)]
        referenced = [resources[ref] for ref in refs if ref in resources]
        record = fhir_record(position, line, group, resources.get, referenced, RULES, TODAY)
        [wire] = fhir_wire_records(RULES, [(position, line, text)], staged, TODAY)

        assert from_wire(wire) == record


def _csv_records() -> list[Record]:
    reader = csv.DictReader(io.StringIO(csv_file(population(3, seed=32))))
    by_code: dict[str, dict[str, Any]] = {}
    for row in reader:
        entry = by_code.setdefault(row["household_code"], {"lines": [], "rows": []})
        entry["lines"].append(reader.line_num)
        entry["rows"].append(row)
    staged = [(i, body["lines"][0], json.dumps(body)) for i, body in enumerate(by_code.values())]
    return [from_wire(w) for w in csv_wire_records(RULES, staged, TODAY, "KES")]


def test_an_imported_households_rows_document_and_snapshot_are_the_services() -> None:
    now = datetime(2026, 6, 1, 8, 30, tzinfo=UTC)
    provider_id, account = uuid7(), ("msisdn", "+254712345678", None, "Amina")
    for record in _csv_records():
        assert record.draft is not None, record.errors
        plain = import_rows.new_household(
            record.draft,
            41,
            now,
            import_rows.PlainPreference(provider_id, "mobile_money", "KES", None, *account, now),
        )
        orm = service.new_household(
            record.draft,
            41,
            now,
            PaymentPreference(
                provider_id=provider_id,
                mechanism="mobile_money",
                currency="KES",
                pay_point_id=None,
                account_kind=account[0],
                account_value=account[1],
                bank_code=account[2],
                holder_name=account[3],
            ),
        )
        orm.id = plain.id
        for orm_member, plain_member in zip(orm.members, plain.members, strict=True):
            orm_member.id, orm_member.household_id = plain_member.id, plain.id

        assert import_rows.document(plain) == service._document(orm)
        assert service.snapshot(plain, None) == service.snapshot(orm, None)
        assert plain.household_number == orm.household_number
