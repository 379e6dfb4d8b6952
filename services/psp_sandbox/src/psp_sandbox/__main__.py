"""`python -m psp_sandbox api|worker|migrate|all`."""

import sys
from pathlib import Path

from amana_common.cli import ServiceEntry, main
from psp_sandbox.main import PortControlledServer, create_psp_sandbox_app
from psp_sandbox.settings import SandboxSettings
from psp_sandbox.worker import worker_components

ENTRY = ServiceEntry(
    name="psp_sandbox",
    settings=SandboxSettings,
    app=create_psp_sandbox_app,  # type: ignore[arg-type]
    components=worker_components,  # type: ignore[arg-type]
    service_dir=Path(__file__).resolve().parents[2],
    api_server=PortControlledServer,
)

if __name__ == "__main__":
    sys.exit(main(ENTRY))
