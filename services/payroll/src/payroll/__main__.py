"""`python -m payroll api|worker|migrate|all`."""

import sys

from amana_common.cli import main
from payroll.main import ENTRY

if __name__ == "__main__":
    sys.exit(main(ENTRY))
