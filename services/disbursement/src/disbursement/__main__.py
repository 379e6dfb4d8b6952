"""`python -m disbursement api|worker|migrate|all`."""

import sys

from amana_common.cli import main
from disbursement.main import ENTRY

if __name__ == "__main__":
    sys.exit(main(ENTRY))
