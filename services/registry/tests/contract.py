"""What the registry's contract test needs beyond the defaults (amana_common.testing.contract)."""

from amana_common.testing.contract import Contract

CONTRACT = Contract(
    # JSON Schema cannot say "not in the future": the clock decides.
    beyond_schema={"POST /households": {"members.*.date_of_birth"}},
)
