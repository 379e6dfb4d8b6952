"""`python -m gateway api` (also `all`: the gateway has no worker and no database)."""

import sys

from amana_common.cli import main
from gateway.main import ENTRY

if __name__ == "__main__":
    sys.exit(main(ENTRY))
