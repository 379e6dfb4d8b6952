"""What the gateway's contract test needs beyond the defaults (amana_common.testing.contract):
the upstreams' own contracts apply at the gateway's paths; the rate limit must not decide."""

from amana_common.testing.contract import Contract

CONTRACT = Contract(settings={"rate_limit_per_s": 100_000, "rate_limit_burst": 100_000})
