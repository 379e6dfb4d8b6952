from pathlib import Path
from typing import Any

import pytest

from amana_common.auth import Role
from amana_common.testing.service import committing_fixtures, service_fixtures
from payroll.main import create_payroll_app
from payroll.settings import PayrollSettings

from .factories import as_user

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


@pytest.fixture
async def manager(settings: PayrollSettings) -> dict[str, str]:
    return as_user(settings, "manager-1", Role.programme_manager)


@pytest.fixture
async def checker(settings: PayrollSettings) -> dict[str, str]:
    return as_user(settings, "checker-1", Role.payroll_approver)
