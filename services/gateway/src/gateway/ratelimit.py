"""Per-client limits: token buckets (`rate` requests a second, at most `burst` saved up) and
a cap on the requests a client has in flight at once."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRACKED_CLIENTS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """In memory, so per gateway replica: with N replicas a client gets up to N times the rate."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, client: str, now: float | None = None) -> float:
        """Takes one token; answers 0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(client, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[client] = bucket  # most recently used last
        if len(self._buckets) > MAX_TRACKED_CLIENTS:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))


class InFlightLimiter:
    """At most `limit` requests of one client in the gateway at once, so that one client's
    slow uploads or downloads cannot hold every upstream connection (per gateway replica)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_flight: dict[str, int] = {}

    def enter(self, client: str) -> Callable[[], None] | None:
        """Counts the request in and answers the function that counts it out, or None when
        the client already has `limit` requests in flight."""
        count = self._in_flight.get(client, 0)
        if count >= self.limit:
            return None
        self._in_flight[client] = count + 1
        left = False

        def leave() -> None:
            nonlocal left
            if left:
                return
            left = True
            remaining = self._in_flight[client] - 1
            if remaining:
                self._in_flight[client] = remaining
            else:
                del self._in_flight[client]

        return leave
