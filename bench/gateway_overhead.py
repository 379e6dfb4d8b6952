"""Gateway overhead over a direct call: p95 at 500 requests/s on loopback (bar: <= 5 ms).

The registry API and the gateway run as real processes (uvicorn). An open-loop generator sends
authenticated GETs arriving at a fixed mean rate (Poisson), for the same duration twice:
straight to the registry, and through the gateway (token check, rate limit, proxy). The
upstream route is a household read with an id that is not a UUID: the registry checks the token
and answers 422 without touching its database (the gateway refuses to proxy an upstream's
/healthz), the same both ways, so the difference is the gateway's own cost.

    make bench-gateway            # or: uv run python bench/gateway_overhead.py --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import uvloop
from _common import at_most, report

from amana_common.auth import Role, issue_token
from amana_common.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[1]
BAR_MS = 5.0
EXPECTED_STATUS = 422  # a real route, refused by validation before any database work
SECRET = secrets.token_urlsafe(32)  # generated: a committed secret is refused
REGISTRY_PORT, GATEWAY_PORT = 18101, 18000


@dataclass
class Run:
    rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int


@contextmanager
def process(name: str, args: list[str], env: dict[str, str], port: int) -> Iterator[None]:
    log = open(REPO / ".local" / f"bench-{name}.log", "w")  # noqa: SIM115 - closed below
    child = subprocess.Popen(args, env=os.environ | env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(port, child)
        yield
    finally:
        child.terminate()
        child.wait(timeout=20)
        log.close()


def wait_until_up(port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"process on port {port} exited; see .local/bench-*.log")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port}")


async def open_loop(url: str, token: str, seconds: int, rate: int) -> Run:
    """Requests arrive as a Poisson process at `rate`/s whatever the answers' speed (an open
    loop), as independent clients would; latency is measured per request."""
    rng = random.Random(7)
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=1000)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status != EXPECTED_STATUS:
                        errors += 1
                        statuses[response.status] = statuses.get(response.status, 0) + 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - started)

        tasks = []
        began = time.perf_counter()
        due = began
        while due - began < seconds:
            due += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    if statuses:
        print(f"unexpected answers from {url}: {statuses}", flush=True)
    return Run(len(ordered) / elapsed, percentile(50), percentile(95), percentile(99), errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rate", type=int, default=500)
    args = parser.parse_args()
    python = sys.executable
    token = issue_token(
        ServiceSettings(environment="test", jwt_secret=SECRET), "bench", [Role.admin]
    )
    routes = [
        {
            "prefix": "/registry",
            "service": "registry",
            "upstream": f"http://127.0.0.1:{REGISTRY_PORT}",
        }
    ]
    common = {"LOG_LEVEL": "WARNING", "JWT_SECRET": SECRET, "ENVIRONMENT": "test"}
    with ExitStack() as stack:
        stack.enter_context(
            process(
                "registry",
                [python, "-m", "registry", "api", "--port", str(REGISTRY_PORT)],
                {f"REGISTRY_{k}": v for k, v in common.items()},
                REGISTRY_PORT,
            )
        )
        stack.enter_context(
            process(
                "gateway",
                [python, "-m", "gateway", "api", "--port", str(GATEWAY_PORT)],
                {f"GATEWAY_{k}": v for k, v in common.items()}
                | {
                    "GATEWAY_ROUTES": json.dumps(routes),
                    "GATEWAY_RATE_LIMIT_PER_S": "100000",
                    "GATEWAY_RATE_LIMIT_BURST": "100000",
                    # One token stands for the many clients of an open loop.
                    "GATEWAY_MAX_CONCURRENT_PER_CLIENT": "1000",
                    "GATEWAY_ACTIVE_SERVICES": '["registry"]',
                },
                GATEWAY_PORT,
            )
        )
        unknown = "/households/not-a-uuid"
        direct_url = f"http://127.0.0.1:{REGISTRY_PORT}{unknown}"
        gateway_url = f"http://127.0.0.1:{GATEWAY_PORT}/registry{unknown}"
        uvloop.run(open_loop(gateway_url, token, 3, args.rate))  # warm-up
        direct = uvloop.run(open_loop(direct_url, token, args.seconds, args.rate))
        through = uvloop.run(open_loop(gateway_url, token, args.seconds, args.rate))
    overhead = through.p95_ms - direct.p95_ms
    print(f"\ngateway overhead at {args.rate} requests/s for {args.seconds}s each (loopback)")
    print(f"{'':12}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, run in (("direct", direct), ("gateway", through)):
        print(
            f"{name:12}{run.rate:8.0f}{run.p50_ms:9.2f}{run.p95_ms:9.2f}{run.p99_ms:9.2f}"
            f"{run.errors:8d}"
        )
    passed = report(
        f"gateway p95 overhead at {args.rate} requests/s",
        overhead,
        "ms",
        at_most(BAR_MS),
        ok=through.errors == 0,
        detail=f"p95 {through.p95_ms:.2f} ms through the gateway, {direct.p95_ms:.2f} ms direct; "
        f"{through.errors} errors",
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
