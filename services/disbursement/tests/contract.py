"""What disbursement's contract test needs beyond the defaults (amana_common.testing.contract)."""

from amana_common.testing.contract import Contract

CONTRACT = Contract(
    # Required of finance and admin, implied by a provider's own token: the caller decides.
    beyond_schema={"POST /statements": {"provider_id"}},
)
