"""Guard against server-side request forgery for URLs Amana is configured to call.

`OutboundUrlPolicy.check(url)` accepts a URL only when:

- its scheme is https; plain http only to a loopback host (`localhost`, 127.0.0.0/8, ::1)
  outside production;
- it carries no credentials (`user:password@`), query or fragment: a base URL holds no secrets;
- its host is a plain DNS name (ASCII: punycode for international names) or an IP literal, and
  not a numeric form that resolvers read as an address (`2130706433`, `0x7f.1`, `127.1`);
- its host is on the allowlist: an exact host or IP, or `*.example.com` for every name below
  `example.com` (not `example.com` itself);
- an IP-literal host is never link-local (169.254.0.0/16 holds cloud metadata services),
  multicast, unspecified or reserved, and in production is a public address;
- an explicit port is an allowed one (443 by default); loopback outside production may use any.

This checks configuration. The code that connects must still resolve the name and refuse
non-public addresses in production, because DNS answers may change after the check.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

MAX_URL_LENGTH = 2048
LOOPBACK_NAMES = frozenset({"localhost"})
_UNSAFE_CHARACTERS = re.compile(r"[\s\\\x00-\x1f\x7f]")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """A refused URL; the message completes "the URL ..." and is fit to show a client."""


def _ip(host: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_dns_name(name: str) -> bool:
    labels = name.split(".")
    return (
        len(name) <= 253
        and all(_LABEL.match(label) for label in labels)
        # A top-level domain starts with a letter; anything else is an address in disguise.
        and labels[-1][0].isalpha()
    )


def normalize_host_pattern(entry: str) -> str:
    """An allowlist entry, lower-cased: `api.psp.example`, `*.psp.example` or an IP literal."""
    value = entry.strip().lower().rstrip(".")
    wildcard = value.startswith("*.")
    name = value[2:] if wildcard else value
    address = _ip(name.strip("[]"))
    if address is not None and not wildcard:
        return str(address)
    if address is not None or not _is_dns_name(name):
        raise ValueError(f"{entry!r} is not a host name, *.domain or IP address")
    if wildcard and "." not in name:
        raise ValueError(f"{entry!r} is too broad: a wildcard needs a domain of two labels or more")
    return value


def host_is_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    return any(
        host.endswith(pattern[1:]) if pattern.startswith("*.") else host == pattern
        for pattern in patterns
    )


@dataclass(frozen=True)
class OutboundUrlPolicy:
    allowed_hosts: tuple[str, ...]
    allowed_ports: frozenset[int] = field(default_factory=lambda: frozenset({443}))
    production: bool = True

    def check(self, url: str) -> str:
        """The URL, normalised (lower-case scheme and host), or `UnsafeUrl` saying why not."""
        if len(url) > MAX_URL_LENGTH:
            raise UnsafeUrl(f"is longer than {MAX_URL_LENGTH} characters")
        if _UNSAFE_CHARACTERS.search(url):
            raise UnsafeUrl("must not contain whitespace, control characters or backslashes")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise UnsafeUrl(f"is not a valid URL ({error})") from error
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise UnsafeUrl("must be an absolute https URL")
        if "@" in parts.netloc:
            raise UnsafeUrl("must not carry credentials (user:password@host)")
        if parts.query or parts.fragment or "?" in url or "#" in url:
            raise UnsafeUrl("must not have a query or fragment")
        host = (parts.hostname or "").rstrip(".")
        address = self._check_host(host)
        loopback = host in LOOPBACK_NAMES or (address is not None and address.is_loopback)
        local_allowed = loopback and not self.production
        if loopback and self.production:
            raise UnsafeUrl("must not point at a loopback host in production")
        if parts.scheme == "http" and not local_allowed:
            raise UnsafeUrl(
                "must use https (plain http only to a loopback host outside production)"
            )
        if not host_is_allowed(str(address or host), self.allowed_hosts):
            raise UnsafeUrl(f"host {host!r} is not on the allowlist of API hosts")
        if port is not None and port not in self.allowed_ports and not local_allowed:
            allowed = ", ".join(str(p) for p in sorted(self.allowed_ports))
            raise UnsafeUrl(f"port {port} is not allowed (allowed: {allowed})")
        netloc = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else host
        if port is not None:
            netloc = f"{netloc}:{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def _check_host(self, host: str) -> IPAddress | None:
        if not host:
            raise UnsafeUrl("has no host")
        if not host.isascii():
            raise UnsafeUrl("host must be ASCII: write an international name in punycode")
        address = _ip(host)
        if address is None:
            if not _is_dns_name(host):
                raise UnsafeUrl(f"host {host!r} is not a valid host name")
            return None
        if address.is_link_local or address.is_multicast or address.is_unspecified:
            raise UnsafeUrl(f"must not point at the link-local, multicast or unspecified {address}")
        if self.production and not address.is_global:
            raise UnsafeUrl(f"must point at a public address in production, not {address}")
        return address
