"""`python -m provider api|worker|migrate|all`."""

import sys

from amana_common.cli import main
from provider.main import ENTRY

if __name__ == "__main__":
    sys.exit(main(ENTRY))
