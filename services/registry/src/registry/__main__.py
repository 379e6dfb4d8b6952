"""`python -m registry api|worker|migrate|all`, `python -m registry generate ...` and
`python -m registry dedupe`."""

import gc
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
    # What is alive once everything is imported (modules, classes, the FHIR models' schemas)
    # is taken out of the garbage collector's reach: otherwise every full collection walks it
    # all, and an import's chunk allocates enough to trigger several.
    gc.freeze()
    sys.exit(main(ENTRY))
