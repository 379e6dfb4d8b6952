"""What the sandbox's contract test needs beyond the defaults (amana_common.testing.contract)."""

from amana_common.testing.contract import Contract

FAULTS = "faults.*"  # which parameters apply depends on the fault's kind
# A seed near 2**63, which a JSON number carries as a float, arrives one past the maximum.
SEED = "faults.*.seed"

CONTRACT = Contract(
    beyond_schema={
        "PUT /sandbox/faults": {FAULTS, SEED},
        "PUT /sandbox/providers/{provider_id}/faults": {FAULTS, SEED},
        # an absolute URL, a whsec_ secret whose rest decodes as base64, one positive weight
        "PUT /sandbox/providers/{provider_id}": {
            "webhook_url",
            "webhook_secret",
            "reason_mix",
            "seed",
        },
    },
)
