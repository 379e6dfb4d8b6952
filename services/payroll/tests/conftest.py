from pathlib import Path
from typing import Any

from amana_common.testing.service import committing_fixtures, service_fixtures
from payroll.main import create_payroll_app
from payroll.settings import PayrollSettings

SERVICE_DIR = Path(__file__).resolve().parents[1]
ATTRIBUTES: dict[str, Any] = {"pmt_score": "number", "housing": "string", "orphan": "boolean"}


def payroll_settings(**values: Any) -> PayrollSettings:
    return PayrollSettings(
        **({"eligibility_attributes": ATTRIBUTES, "environment": "test"} | values)
    )


database_url, database, settings, client = service_fixtures(
    "payroll", SERVICE_DIR, payroll_settings, create_payroll_app
)
committed_database, committed_client = committing_fixtures(
    "payroll", SERVICE_DIR, payroll_settings, create_payroll_app
)
