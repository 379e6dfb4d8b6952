"""`python -m provider api|worker|migrate|all`."""

import sys
from pathlib import Path

from amana_common.cli import ServiceEntry, main
from provider.main import create_provider_app
from provider.settings import ProviderSettings
from provider.worker import worker_components

ENTRY = ServiceEntry(
    name="provider",
    settings=ProviderSettings,
    app=create_provider_app,  # type: ignore[arg-type]
    components=worker_components,
    service_dir=Path(__file__).resolve().parents[2],
)

if __name__ == "__main__":
    sys.exit(main(ENTRY))
