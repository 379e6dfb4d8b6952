"""`python -m registry api|worker|migrate|all`, and `python -m registry generate ...`."""

import sys

from amana_common.cli import main
from registry.main import ENTRY

if __name__ == "__main__":
    if sys.argv[1:2] == ["generate"]:
        from registry.generate_cli import generate_main

        sys.exit(generate_main(sys.argv[2:]))
    sys.exit(main(ENTRY))
