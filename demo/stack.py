"""The stack `make run` started, as the demo reaches it: the gateway with one development token
per role, and the PSP sandbox (an external party, not behind the gateway)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
RETRIED = frozenset({429, 502, 503, 504})  # the gateway's answers for "later"
ROLES = ("admin", "registrar", "programme-manager", "payroll-approver", "finance")


class DemoFailed(Exception):
    """A stage failed or timed out: the demo stops and exits non-zero."""


class Stack:
    def __init__(self, gateway: str, sandbox: str, timeout_s: float = 60) -> None:
        self.gateway = gateway.rstrip("/")
        self.sandbox = sandbox.rstrip("/")
        self.http = httpx.AsyncClient(timeout=timeout_s)
        self.tokens: dict[str, str] = {}

    async def __aenter__(self) -> Stack:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.http.aclose()

    async def sign_in(self) -> None:
        """A token per role from the gateway's development clients (`<role>-dev`)."""
        for role in ROLES:
            answer = await self._send(
                "POST",
                f"{self.gateway}/auth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": f"{role}-dev",
                    "client_secret": f"{role}-dev-secret",
                },
            )
            if answer.status_code != 200:
                raise DemoFailed(
                    f"no token for {role}-dev ({answer.status_code}): is the stack `make run` "
                    "started, with GATEWAY_DEV_TOKEN_ENDPOINT=true?"
                )
            self.tokens[role] = answer.json()["access_token"]

    async def call(
        self,
        role: str,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...] = (200,),
        sandbox: bool = False,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request as `role`; retried while the gateway says later (429, 502-504), then
        DemoFailed unless its status is expected."""
        url = (self.sandbox if sandbox else self.gateway) + path
        auth = {"Authorization": f"Bearer {self.tokens[role]}", **(headers or {})}
        answer = await self._send(method, url, headers=auth, **kwargs)
        if answer.status_code not in expect:
            raise DemoFailed(f"{method} {path} as {role}: {answer.status_code} {answer.text[:500]}")
        return answer

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(30):
            try:
                answer = await self.http.request(method, url, **kwargs)
            except httpx.TransportError as error:
                if attempt >= 5:
                    raise DemoFailed(f"{method} {url}: {error!r}") from error
                await asyncio.sleep(1)
                continue
            if answer.status_code not in RETRIED:
                return answer
            await asyncio.sleep(_retry_after(answer, attempt))
        return answer


def _retry_after(answer: httpx.Response, attempt: int) -> float:
    try:
        seconds = float(answer.headers.get("retry-after", ""))
    except ValueError:
        seconds = 0.1 * 2**attempt
    return min(5.0, max(0.05, seconds))


async def wait_for(
    what: str,
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float,
    interval_s: float = 1.0,
) -> T:
    """Polls `probe` until it answers something, for at most `timeout_s` (bounded waits:
    a stage that does not finish fails the demo)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise DemoFailed(f"timed out after {timeout_s:.0f} s: {what}")
        await asyncio.sleep(interval_s)


class RateLimit:
    """At most `per_s` starts a second (the gateway allows a client 100, burst 200)."""

    def __init__(self, per_s: float) -> None:
        self.interval = 1 / per_s
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            now = time.monotonic()
            self.next = max(self.next, now)
            delay = self.next - now
            self.next += self.interval
        if delay > 0:
            await asyncio.sleep(delay)
