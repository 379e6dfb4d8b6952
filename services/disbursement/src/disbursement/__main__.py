"""`python -m disbursement api|worker|migrate|all`."""

import sys

from amana_common.cli import main
from disbursement.main import ENTRY, freeze_startup_heap

if __name__ == "__main__":
    freeze_startup_heap()
    sys.exit(main(ENTRY))
