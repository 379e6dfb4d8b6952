"""`python -m registry api|worker|migrate|all`."""

import sys

from amana_common.cli import main
from registry.main import ENTRY

if __name__ == "__main__":
    sys.exit(main(ENTRY))
