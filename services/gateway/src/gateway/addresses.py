"""The caller's address, which rate limits and the upstreams' logs rely on.

A client can write any X-Forwarded-For it likes; only the hops added by proxies the operator
trusts (GATEWAY_TRUSTED_PROXIES, e.g. the ingress controller's pod network) are believed.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

Network = IPv4Network | IPv6Network


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The peer, unless it is a trusted proxy: then the rightmost X-Forwarded-For hop that is
    not a trusted proxy (what lies left of it was written by a client, not by us)."""
    address = peer or "unknown"
    if not _trusted(address, trusted):
        return address
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_address(hop):
            return address  # garbage reported by the trusted hop: that hop is all we know
        address = hop
        if not _trusted(hop, trusted):
            return hop
    return address


def _is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    if not trusted or not _is_address(address):
        return False
    parsed = ip_address(address)
    return any(parsed in network for network in trusted)
