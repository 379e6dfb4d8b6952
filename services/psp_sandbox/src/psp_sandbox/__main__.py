"""`python -m psp_sandbox api|worker|migrate|all`."""

import sys

from amana_common.cli import main
from psp_sandbox.main import ENTRY

if __name__ == "__main__":
    sys.exit(main(ENTRY))
