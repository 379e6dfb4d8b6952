"""What the gateway's contract test needs beyond the defaults (amana_common.testing.contract):
the upstreams' own contracts apply at the gateway's paths; the rate limit must not decide; the
development token endpoint is served so that its contract is tested too. Each upstream is
fuzzed on its own: here fewer examples suffice to test the merged document and the proxy."""

from amana_common.testing.contract import Contract

CONTRACT = Contract(
    max_examples=3,
    settings={
        "rate_limit_per_s": 100_000,
        "rate_limit_burst": 100_000,
        "dev_token_endpoint": True,
    },
)
