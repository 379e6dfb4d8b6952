"""The gateway routes the disbursement API, and lets only the signed webhook path through
without a token."""

import re

from gateway.settings import GatewaySettings


def test_the_gateway_routes_disbursement_and_only_webhooks_are_public() -> None:
    routes = {
        r.prefix: r
        for r in GatewaySettings(environment="test").routes
        if r.service == "disbursement"
    }

    assert set(routes) == {
        "/payments",
        "/batches",
        "/reconciliation",
        "/statements",
        "/reason-codes",
        "/channels",
        "/webhooks",
    }
    assert all(r.upstream == "http://127.0.0.1:8104" for r in routes.values())
    public = [p for r in routes.values() for p in r.public_paths]
    assert public == [r"^/providers/[0-9a-fA-F-]{36}$"]
    pattern = re.compile(public[0])
    assert pattern.match("/providers/01930000-0000-7000-8000-00000000d0d0")
    assert not pattern.match("/providers/01930000-0000-7000-8000-00000000d0d0/secrets")
    assert routes["/statements"].max_body_bytes == 16 * 1024 * 1024
