"""What the analytics contract test needs beyond the defaults (amana_common.testing.contract).

A DHIS2 mapping of every exportable report, so that exports and pushes are answered, and a
DHIS2 URL on a loopback port where nothing listens: a push is then recorded as `failed` (201),
which gives the stateful phase pushes to list and read.
"""

import json

from amana_common.testing.clients import free_port
from amana_common.testing.contract import Contract
from analytics.schemas import PushFilters

# One column of each report as a data element (ids are 11 characters, as DHIS2's are).
MEASURES = {
    "enrolment": "households",
    "households": "households",
    "members": "members",
    "coverage": "paid",
    "payroll": "amount_minor",
    "outcomes": "settled",
    "non_payment_reasons": "payments",
    "timeliness": "settled",
    "duplicates": "flags",
}
MAPPING = {
    "data_set": "DataSet0001",
    "period_type": "Monthly",
    "org_units": {"ROOT": "OrgUnitRoot"},
    "reports": {
        report: {"measures": {column: {"data_element": f"De{i:09d}"}}}
        for i, (report, column) in enumerate(MEASURES.items())
    },
}

CONTRACT = Contract(
    settings={
        "dhis2_mapping": json.dumps(MAPPING),
        "dhis2_url": f"http://127.0.0.1:{free_port()}",
        "dhis2_allowed_hosts": "127.0.0.1",
        "dhis2_timeout_s": 2,
    },
    # Rules of the configured mapping and of the stored rows, which the schema cannot state:
    # a grouping the mapping cannot send, a report whose rows need the `period` filter; and
    # the filters a push's report takes, with values that name stored codes or periods.
    beyond_schema_codes={"dhis2-unmapped", "dhis2-period-required"},
    beyond_schema={"POST /dhis2/pushes": {f"filters.{name}" for name in PushFilters.model_fields}},
)
