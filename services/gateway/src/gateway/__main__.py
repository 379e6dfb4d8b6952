"""`python -m gateway api` (also `all`: the gateway has no worker and no database)."""

import sys

from amana_common.cli import ServiceEntry, main
from gateway.main import create_gateway_app
from gateway.settings import GatewaySettings

ENTRY = ServiceEntry(name="gateway", settings=GatewaySettings, app=create_gateway_app)  # type: ignore[arg-type]

if __name__ == "__main__":
    sys.exit(main(ENTRY))
