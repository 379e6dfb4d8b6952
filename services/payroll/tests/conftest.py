from pathlib import Path
from typing import Any

from amana_common.testing.service import service_fixtures
from payroll.main import create_payroll_app
from payroll.settings import PayrollSettings

SERVICE_DIR = Path(__file__).resolve().parents[1]
ATTRIBUTES: dict[str, Any] = {"pmt_score": "number", "housing": "string", "orphan": "boolean"}


def payroll_settings(**values: object) -> PayrollSettings:
    return PayrollSettings(eligibility_attributes=ATTRIBUTES, **values)  # type: ignore[arg-type]


database_url, database, settings, client = service_fixtures(
    "payroll", SERVICE_DIR, payroll_settings, create_payroll_app
)
