"""An HTTP client for URLs partners configure (provider APIs): the SSRF guard applied where it
matters, when the connection is made.

`OutboundUrlPolicy.check` vets the configured URL; DNS may still answer differently when the
call is made (rebinding). This client resolves the host itself at connect time, refuses
link-local, multicast and unspecified addresses always and non-public ones in production, and
connects to the address it checked (TLS still verifies the certificate against the host
name). It never follows redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from amana_common.outbound import UnsafeUrl
from amana_common.tracing import trace_http_client


def refuse_unsafe_address(address: str, production: bool) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        raise UnsafeUrl(f"resolves to the link-local, multicast or unspecified {ip}")
    if production and not ip.is_global:
        raise UnsafeUrl(f"resolves to the non-public address {ip} in production")


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, production: bool) -> None:
        self.production = production
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [str(info[4][0]) for info in infos]
        if not addresses:
            raise httpcore.ConnectError(f"{host} does not resolve")
        for address in addresses:
            refuse_unsafe_address(address, self.production)
        return await self.inner.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, production: bool, max_connections: int = 20) -> None:
        super().__init__(retries=0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            network_backend=GuardedNetworkBackend(production),
        )


def guarded_client(production: bool, timeout_s: float) -> httpx.AsyncClient:
    """Resolves and checks every connection's address; follows no redirect. Traced when
    tracing is on: the provider's server continues the trace."""
    client = httpx.AsyncClient(
        transport=GuardedTransport(production),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
    )
    return trace_http_client(client)
