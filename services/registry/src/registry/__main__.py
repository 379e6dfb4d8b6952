"""`python -m registry api|worker|migrate|all`, `python -m registry generate ...` and
`python -m registry dedupe`."""

import sys

from amana_common.cli import main
from registry.main import ENTRY

if __name__ == "__main__":
    if sys.argv[1:2] == ["generate"]:
        from registry.generate_cli import generate_main

        sys.exit(generate_main(sys.argv[2:]))
    if sys.argv[1:2] == ["dedupe"]:
        from registry.duplicates_cli import dedupe_main

        sys.exit(dedupe_main(sys.argv[2:]))
    sys.exit(main(ENTRY))
