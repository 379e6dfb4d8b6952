"""No analytics column can hold a name, an identifier, a phone or account number, a date of
birth or a human reference, and none does after ingesting events full of them.

The schema is checked against an allow-list of every column with its type (a new column
fails here until someone decides it is safe) and against a deny-list of names that would
hold personal data; the rows are dumped as text after the scenario and searched for every
piece of personal data the events carried.
"""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import text

from amana_common.db import Database
from analytics.settings import AnalyticsSettings

from . import factories
from .factories import uid
from .ingest import ingest_batch
from .scenario import CYCLE, LINES, scenario

INFRASTRUCTURE = {"outbox", "processed_events", "idempotency_keys", "alembic_version"}
DENIED = re.compile(
    r"name|given|family|holder|phone|msisdn|e_?mail|account|iban|identifier|national|passport|"
    r"birth|dob|household_number|payment_number|household_id|member_id|payment_id|"
    r"_by$|address|gps|latitude|longitude|reference",
)
UUID, TEXT, INT, BIG, SMALL, DATE, TIME, BYTES = (
    "uuid",
    "character varying",
    "integer",
    "bigint",
    "smallint",
    "date",
    "timestamp with time zone",
    "bytea",
)
ALLOWED: dict[str, dict[str, str]] = {
    "programmes": {
        "programme_id": UUID,
        "code": TEXT,
        "currency": TEXT,
        "status": TEXT,
        "payment_window_days": INT,
        "budget_per_cycle_minor": BIG,
        "version": INT,
    },
    "providers": {"provider_id": UUID, "code": TEXT, "status": TEXT, "version": INT},
    "payrolls": {
        "payroll_id": UUID,
        "programme_id": UUID,
        "cycle_id": UUID,
        "period_start": DATE,
        "period_end": DATE,
        "currency": TEXT,
        "window_start": DATE,
        "window_end": DATE,
        "line_count": INT,
        "total_amount_minor": BIG,
        "budget_minor": BIG,
        "eligible_count": INT,
        "generated_at": TIME,
        "approved_at": TIME,
        "rejected_at": TIME,
    },
    "payroll_reconciliations": {
        "payroll_id": UUID,
        "reconciled_at": TIME,
        "line_count": INT,
        "total_amount_minor": BIG,
        "fees_minor": BIG,
        "exceptions_open": INT,
    },
    "payroll_exclusions": {"payroll_id": UUID, "reason": TEXT, "households": INT},
    "payroll_locations": {
        "payroll_id": UUID,
        "location_code": TEXT,
        "eligible": INT,
        "on_payroll": INT,
        "amount_minor": BIG,
    },
    "payroll_chunks": {"payroll_id": UUID, "chunk_index": INT},
    "payroll_line_totals": {
        "payroll_id": UUID,
        "location_code": TEXT,
        "provider_id": UUID,
        "mechanism": TEXT,
        "sex": TEXT,
        "age_band": TEXT,
        "programme_id": UUID,
        "cycle_id": UUID,
        "currency": TEXT,
        "lines": INT,
        "amount_minor": BIG,
    },
    "payment_facts": {
        "payment_key": BYTES,
        "payroll_id": UUID,
        "programme_id": UUID,
        "cycle_id": UUID,
        "location_code": TEXT,
        "provider_id": UUID,
        "mechanism": TEXT,
        "sex": TEXT,
        "age_band": TEXT,
        "currency": TEXT,
        "amount_minor": BIG,
        "fee_minor": BIG,
        "outcome": TEXT,
        "reason_code": TEXT,
        "outcome_at": TIME,
        "rank": SMALL,
    },
    "payment_totals": {
        "programme_id": UUID,
        "cycle_id": UUID,
        "payroll_id": UUID,
        "location_code": TEXT,
        "provider_id": UUID,
        "mechanism": TEXT,
        "sex": TEXT,
        "age_band": TEXT,
        "currency": TEXT,
        "outcome": TEXT,
        "reason_code": TEXT,
        "payments": BIG,
        "amount_minor": BIG,
        "fee_minor": BIG,
    },
    "household_facts": {
        "household_key": BYTES,
        "version": INT,
        "location_code": TEXT,
        "status": TEXT,
        "enrolled_on": DATE,
        "head_sex": TEXT,
        "head_age_band": TEXT,
        "composition": "jsonb",
    },
    "household_totals": {
        "location_code": TEXT,
        "enrolled_on": DATE,
        "status": TEXT,
        "head_sex": TEXT,
        "head_age_band": TEXT,
        "households": INT,
        "members": INT,
    },
    "member_totals": {
        "location_code": TEXT,
        "enrolled_on": DATE,
        "status": TEXT,
        "sex": TEXT,
        "age_band": TEXT,
        "members": INT,
    },
    "duplicate_flags": {
        "flag_key": BYTES,
        "location_code": TEXT,
        "score": "double precision",
        "flagged_at": TIME,
        "decided_at": TIME,
        "decision": TEXT,
    },
    "dhis2_pushes": {
        "push_id": UUID,
        "report": TEXT,
        "filters": "jsonb",
        "target": TEXT,
        "data_values": INT,
        "status": TEXT,
        "http_status": SMALL,
        "imported": INT,
        "updated": INT,
        "ignored": INT,
        "deleted": INT,
        "conflicts": "jsonb",
        "error": "text",
        "requested_at": TIME,
    },
}
# Short codes only: free text long enough for a name or an address has no place here,
# except a DHIS2 target URL and DHIS2's own error text of a push.
MAX_TEXT = {("dhis2_pushes", "target"): 2048}


async def _columns(database: Database) -> dict[str, dict[str, tuple[str, int | None]]]:
    async with database.sessionmaker() as session:
        result = await session.execute(
            text(
                "SELECT table_name, column_name, data_type, character_maximum_length "
                "FROM information_schema.columns WHERE table_schema = 'public'"
            )
        )
    found: dict[str, dict[str, tuple[str, int | None]]] = {}
    for table, column, kind, length in result:
        if table not in INFRASTRUCTURE:
            found.setdefault(table, {})[column] = (kind, length)
    return found


async def test_every_column_is_allowed_and_none_could_hold_personal_data(
    database: Database,
) -> None:
    columns = await _columns(database)
    assert {t: {c: kind for c, (kind, _) in cs.items()} for t, cs in columns.items()} == ALLOWED
    for table, table_columns in columns.items():
        for column, (kind, length) in table_columns.items():
            assert not DENIED.search(column), f"{table}.{column} looks like personal data"
            if kind == TEXT:
                assert length is not None
                assert length <= MAX_TEXT.get((table, column), 100), f"{table}.{column}"


def _needles() -> list[str]:
    """Every piece of personal data the scenario's events carry, as text."""
    people = [f"h{i}" for i in range(1, 8)]
    ids = [uid(f"household/{p}") for p in people] + [uid(f"{p}/member/0") for p in people]
    ids += [line.payment_id(CYCLE) for line in LINES] + [line.line_id(CYCLE) for line in LINES]
    ids += [uid(f"flag/f{i}") for i in range(1, 4)]
    births = [
        date(1980, 5, 1),
        date(2015, 1, 1),
        date(2022, 6, 1),
        date(1960, 1, 1),
        date(1965, 3, 3),
        date(2000, 2, 2),
        date(1990, 12, 12),
        date(2010, 11, 2),
        date(1950, 7, 7),
    ]
    return [
        factories.GIVEN,
        factories.FAMILY,
        factories.NATIONAL_ID,
        factories.PHONE,
        factories.ACCOUNT,
        factories.IBAN,
        factories.HOLDER,
        "H0000000001",
        "H0000000005",
        "reviewer-sub-42",
        "approver-sub-7",
        "REF-h1",
        *(str(i) for i in ids),
        *(i.hex for i in ids),
        *(d.isoformat() for d in births),
    ]


async def test_no_row_holds_the_personal_data_of_the_events(
    database: Database, settings: AnalyticsSettings
) -> None:
    events = scenario().events
    await ingest_batch(database, settings, events)
    dumps = []
    async with database.sessionmaker() as session:
        for table in ALLOWED:
            result = await session.execute(text(f"SELECT t::text FROM {table} t"))
            dumps += [row[0] for row in result]
    assert len(dumps) > 50  # the scenario filled the tables
    everything = "\n".join(dumps).lower()
    for needle in _needles():
        assert needle.lower() not in everything, f"{needle!r} is stored"
    # The payroll numbers in the events are there, so the check above could fail.
    payload_text = "\n".join(e.model_dump_json() for _, e in events).lower()
    assert all(needle.lower() in payload_text for needle in _needles()[:12])
