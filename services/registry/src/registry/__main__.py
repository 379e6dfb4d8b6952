"""`python -m registry api|worker|migrate|all`."""

import sys
from pathlib import Path

from amana_common.cli import ServiceEntry, main
from registry.main import create_registry_app
from registry.settings import RegistrySettings
from registry.worker import worker_components

ENTRY = ServiceEntry(
    name="registry",
    settings=RegistrySettings,
    app=create_registry_app,  # type: ignore[arg-type]
    components=worker_components,
    service_dir=Path(__file__).resolve().parents[2],
)

if __name__ == "__main__":
    sys.exit(main(ENTRY))
