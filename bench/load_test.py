"""`make load-test`: a mixed workload through the gateway of the stack `make run` starts.

Locust (headless) runs `bench/load/locustfile.py`: 100 users acting once a second each, about
100 requests/s (60% registrars: enrol, search, read, history; 20% programme staff: provider
lookups and reads; 20% the provider's signed settlement webhooks; and one programme manager
simulating a payroll every 10 s), first
for a warm-up of 30 s, then for 2 minutes measured. Reported per operation: requests/s,
p50/p95/p99, failures; and each service's resident memory (VmRSS from /proc) when the stack was
found, after the warm-up and at the end.

The run fails on any 5xx, and when a service's RSS grew during the measured run by more than
max(32 MiB, 15%) over what it had after the warm-up (caches fill during the warm-up; a leak
keeps growing). Other failures (4xx: a 429 of the gateway's rate limit, say) are counted in the
error rate and shown per operation. The table goes into bench/README.md, "Load test".

    make run && make load-test && make stop
    uv run python bench/load_test.py --users 100 --seconds 120 --warmup 30
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from _common import REPO, at_most, load_average, report, write_readme_section

sys.path.insert(0, str(REPO / "bench" / "load"))
sys.path.insert(0, str(REPO))
from demo import plan  # the demo's programme rules, simulated by programme staff
from households import household  # the same households the users enrol

GATEWAY = "http://127.0.0.1:8000"
ROLES = ["registrar", "auditor", "programme-manager", "finance", "admin"]
SERVER_ERROR = re.compile(r"\b5\d\d\b")
RSS_SLACK_MIB, RSS_SLACK_SHARE = 32.0, 0.15


@dataclass(frozen=True)
class Operation:
    name: str
    requests: int
    failures: int
    rate: float
    p50: float
    p95: float
    p99: float


def services() -> dict[str, int]:
    """The stack's processes, from the pid files `make run` writes."""
    found = {}
    for pidfile in sorted((REPO / ".local" / "run").glob("*.pid")):
        pid = int(pidfile.read_text().strip())
        if Path(f"/proc/{pid}").exists():
            found[pidfile.stem] = pid
    return found


def rss_mib(pids: dict[str, int]) -> dict[str, float]:
    sizes = {}
    for name, pid in pids.items():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes[name] = int(line.split()[1]) / 1024
    return sizes


def token(http: httpx.Client, role: str) -> str:
    answer = http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": f"{role}-dev",
            "client_secret": f"{role}-dev-secret",
        },
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def fixture(http: httpx.Client, households: int) -> dict[str, Any]:
    """Tokens, a provider with its webhook secret, and households to search and read."""
    tokens = {role: token(http, role) for role in ROLES}

    def auth(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}

    code = f"LOAD-{random.randrange(16**6):06X}"
    provider = http.post(
        "/providers",
        headers=auth("finance"),
        json={
            "code": code,
            "legal_name": "Load test mobile money",
            "country": "KE",
            "currencies": ["KES"],
            "mechanisms": ["mobile_money"],
            "service_areas": ["KE-047"],
            "contact": {"name": "Desk", "email": "desk@load.example", "phone": "+254700000009"},
            "fee": {"currency": "KES", "fixed_minor": 3000, "basis_points": 150},
            "delivery": {"mode": "file", "file_profile": {"format": "csv"}},
        },
    )
    assert provider.status_code == 201, provider.text
    provider_id = provider.json()["id"]
    secret = webhook_secret(http, provider_id, auth("admin"))
    ids, names = [], []
    for _ in range(households):
        body = household()
        answer = http.post("/registry/households", headers=auth("registrar"), json=body)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
        head = body["members"][0]
        names.append((head["given_name"], head["family_name"]))
    return {
        "tokens": tokens,
        "programme_id": programme(http, auth("programme-manager"), code),
        "provider_id": provider_id,
        "webhook_secret": secret,
        "households": ids,
        "names": names,
    }


def programme(http: httpx.Client, headers: dict[str, str], code: str) -> str:
    """A draft programme with the demo's rules, for the simulation task."""
    answer = http.post(
        "/programmes",
        headers=headers | {"Idempotency-Key": code},
        json={
            "code": code,
            "name": "Load test programme",
            "currency": plan.CURRENCY,
            "start_date": date.today().replace(day=1).isoformat(),
            "frequency": plan.Schedule.due_on(date.today()).frequency(),
            "budget_per_cycle_minor": plan.BUDGET_PER_CYCLE_MINOR,
            "eligibility": plan.ELIGIBILITY,
            "formula": plan.FORMULA,
            "budget_priority": plan.BUDGET_PRIORITY,
        },
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def webhook_secret(http: httpx.Client, provider_id: str, headers: dict[str, str]) -> str:
    """Disbursement learns of the provider from its event; until then it answers 404."""
    deadline = time.monotonic() + 90
    while True:
        answer = http.post(f"/channels/{provider_id}/webhook-secrets", headers=headers)
        if answer.status_code == 201:
            return str(answer.json()["secret"])
        if answer.status_code != 404 or time.monotonic() > deadline:
            raise SystemExit(f"no webhook secret for the provider: {answer.text}")
        time.sleep(1)


def locust(fixture_file: Path, users: int, seconds: int, csv_prefix: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(REPO / "bench" / "load" / "locustfile.py"),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(max(1, users // 5)),
        "--run-time",
        f"{seconds}s",
        "--host",
        GATEWAY,
        "--csv",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    environment = {"AMANA_LOAD_FIXTURE": str(fixture_file)}
    subprocess.run(command, env=os.environ | environment, check=False, timeout=seconds + 120)


def operations(csv_prefix: Path) -> list[Operation]:
    found = []
    with open(f"{csv_prefix}_stats.csv") as stats:
        for row in csv.DictReader(stats):
            found.append(
                Operation(
                    row["Name"],
                    int(row["Request Count"]),
                    int(row["Failure Count"]),
                    float(row["Requests/s"]),
                    float(row["50%"] or 0),
                    float(row["95%"] or 0),
                    float(row["99%"] or 0),
                )
            )
    return found


def server_errors(csv_prefix: Path) -> list[tuple[str, str, int]]:
    found = []
    with open(f"{csv_prefix}_failures.csv") as failures:
        for row in csv.DictReader(failures):
            if SERVER_ERROR.search(row["Error"]):
                found.append((row["Name"], row["Error"][:160], int(row["Occurrences"])))
    return found


def failures_by_kind(csv_prefix: Path) -> str:
    kinds: dict[str, int] = {}
    with open(f"{csv_prefix}_failures.csv") as failures:
        for row in csv.DictReader(failures):
            code = re.search(r"\b[1-5]\d\d\b", row["Error"])
            key = code.group(0) if code else row["Error"][:60]
            kinds[key] = kinds.get(key, 0) + int(row["Occurrences"])
    return ", ".join(f"{count} x {kind}" for kind, count in sorted(kinds.items())) or "none"


def table(
    ops: list[Operation],
    memory: list[dict[str, float]],
    args: argparse.Namespace,
    loads: tuple[float, float],
    failures: str,
) -> str:
    began = datetime.now(UTC)
    total = next(op for op in ops if op.name == "Aggregated")
    lines = [
        f"Run {began:%Y-%m-%d %H:%M} UTC with `make load-test` ({args.users} users acting once "
        f"a second each, {args.warmup} s warm-up then {args.seconds} s measured), against "
        f"`make run`'s stack on loopback: about {args.users} requests/s offered, "
        f"{total.rate:.0f}/s served. Load average (1 min) {loads[0]:.1f} at the start, "
        f"{loads[1]:.1f} at the end (2 shared cores: indicative).",
        "",
        "| operation | requests | req/s | p50 ms | p95 ms | p99 ms | failures |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op in ops:
        lines.append(
            f"| {op.name} | {op.requests:,} | {op.rate:.1f} | {op.p50:.0f} | {op.p95:.0f} | "
            f"{op.p99:.0f} | {op.failures:,} |"
        )
    lines += [
        "",
        f"Failures by status: {failures}.",
        "",
        "| service | RSS at start MiB | after warm-up | at the end | growth |",
        "|---|---:|---:|---:|---:|",
    ]
    cold, warm, end = memory
    for name in end:
        growth = end[name] - warm.get(name, end[name])
        lines.append(
            f"| {name} | {cold.get(name, 0):.0f} | {warm.get(name, 0):.0f} | {end[name]:.0f} | "
            f"{growth:+.0f} MiB |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--households", type=int, default=100, help="enrolled beforehand")
    args = parser.parse_args()
    pids = services()
    try:
        httpx.get(f"{GATEWAY}/healthz", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        raise SystemExit(f"no gateway at {GATEWAY} ({error}): start it with `make run`") from None
    if "gateway" not in pids:
        raise SystemExit("the gateway on :8000 is not this checkout's `make run` (.local/run)")
    loads = [load_average()]
    with httpx.Client(base_url=GATEWAY, timeout=30) as http:
        prepared = fixture(http, args.households)
    memory = [rss_mib(pids)]
    with tempfile.TemporaryDirectory() as scratch:
        fixture_file = Path(scratch) / "fixture.json"
        fixture_file.write_text(json.dumps(prepared))
        locust(fixture_file, args.users, args.warmup, Path(scratch) / "warmup")
        memory.append(rss_mib(pids))
        measured = Path(scratch) / "measured"
        locust(fixture_file, args.users, args.seconds, measured)
        memory.append(rss_mib(pids))
        ops = operations(measured)
        errors = server_errors(measured)
        failures = failures_by_kind(measured)
    loads.append(load_average())
    passed = judge(ops, errors, memory, args)
    text = table(ops, memory, args, (loads[0], loads[1]), failures)
    verdict = "PASS" if passed else "FAIL"
    text += (
        f"\n**{verdict}**: {sum(count for _, _, count in errors)} answers 5xx; every service's RSS "
        f"growth after the warm-up within max({RSS_SLACK_MIB:.0f} MiB, "
        f"{RSS_SLACK_SHARE:.0%}): {'yes' if passed else 'see above'}.\n"
    )
    print("\n" + text)
    write_readme_section("Load test", text)
    return 0 if passed else 1


def judge(
    ops: list[Operation],
    errors: list[tuple[str, str, int]],
    memory: list[dict[str, float]],
    args: argparse.Namespace,
) -> bool:
    total = next(op for op in ops if op.name == "Aggregated")
    ok = report(
        f"load test: throughput through the gateway, {args.users} users",
        total.rate,
        "requests/s",
        detail=f"{total.requests:,} requests in {args.seconds} s; p50 {total.p50:.0f} ms, "
        f"p95 {total.p95:.0f} ms, p99 {total.p99:.0f} ms",
    )
    ok &= report(
        "load test: error rate",
        100 * total.failures / max(1, total.requests),
        "%",
        detail=f"{total.failures:,} failed requests",
    )
    ok &= report(
        "load test: 5xx answers",
        sum(count for _, _, count in errors),
        "",
        at_most(0),
        detail="; ".join(f"{name}: {count} x {error}" for name, error, count in errors),
    )
    _, warm, end = memory
    for name, size in end.items():
        allowed = max(RSS_SLACK_MIB, RSS_SLACK_SHARE * warm[name])
        ok &= report(
            f"load test: {name} RSS growth after warm-up",
            size - warm[name],
            "MiB",
            at_most(round(allowed)),
            detail=f"{warm[name]:.0f} -> {size:.0f} MiB",
        )
    return ok


if __name__ == "__main__":
    sys.exit(main())
