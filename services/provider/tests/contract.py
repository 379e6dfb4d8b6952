"""What the provider's contract test needs beyond the defaults (amana_common.testing.contract)."""

from amana_common.testing.contract import Contract

# Rules that depend on configuration or on what is stored, which JSON Schema cannot state.
BASE_URL = "delivery.base_url"  # allowlisted hosts and ports, no private or metadata address
LOCATIONS = "location_codes.*"  # inside the provider's service areas
FEE = "fee.currency"  # one of the provider's currencies (the request's or the stored ones)

CONTRACT = Contract(
    beyond_schema={
        "POST /providers": {BASE_URL, FEE},
        "PATCH /providers/{provider_id}": {BASE_URL, FEE, "mechanisms", "service_areas"},
        "POST /providers/{provider_id}/pay-points": {LOCATIONS, "provider_id"},
        "PATCH /providers/{provider_id}/pay-points/{pay_point_id}": {LOCATIONS},
    },
)
