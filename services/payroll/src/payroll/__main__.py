"""`python -m payroll api|worker|migrate|all`."""

import sys
from pathlib import Path

from amana_common.cli import ServiceEntry, main
from payroll.main import create_payroll_app
from payroll.settings import PayrollSettings
from payroll.worker import worker_components

ENTRY = ServiceEntry(
    name="payroll",
    settings=PayrollSettings,
    app=create_payroll_app,  # type: ignore[arg-type]
    components=worker_components,
    service_dir=Path(__file__).resolve().parents[2],
)

if __name__ == "__main__":
    sys.exit(main(ENTRY))
