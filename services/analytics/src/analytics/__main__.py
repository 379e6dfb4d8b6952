"""`python -m analytics api|worker|migrate|all`, and `python -m analytics rebuild`."""

import sys

from amana_common.cli import main
from analytics.main import ENTRY

if __name__ == "__main__":
    if sys.argv[1:2] == ["rebuild"]:
        from analytics.rebuild import main as rebuild

        sys.exit(rebuild(sys.argv[2:]))
    sys.exit(main(ENTRY))
