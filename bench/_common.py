"""What every benchmark shares: how it reports a figure, and where the local servers are.

A benchmark reports each figure it measures with `report(...)`, which prints a line for people
and one for `bench/run.py` (`make bench`), which collects them into the table:

    BENCH {"metric": "...", "figure": 6120.4, "unit": "events/s", "bar": ">= 5,000 events/s",
           "pass": true, "detail": "..."}

`pass` is null for a figure printed for information, without a bar. A benchmark exits with
status 1 when a bar is missed; one that crashes is a FAIL row in the table with its error.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[1]
PREFIX = "BENCH "


@dataclass(frozen=True)
class Bar:
    op: Literal[">=", "<="]
    value: float

    def met_by(self, figure: float) -> bool:
        return figure >= self.value if self.op == ">=" else figure <= self.value

    def text(self, unit: str) -> str:
        return f"{self.op} {self.value:,g} {unit}".strip()


def at_least(value: float) -> Bar:
    return Bar(">=", value)


def at_most(value: float) -> Bar:
    return Bar("<=", value)


def report(
    metric: str,
    figure: float,
    unit: str,
    bar: Bar | None = None,
    *,
    ok: bool = True,
    detail: str = "",
) -> bool:
    """Prints `figure` against `bar`; `ok=False` fails it whatever the figure (errors seen, a
    count that does not add up: say why in `detail`). Answers False only when it failed."""
    passed = None if bar is None else bar.met_by(figure) and ok
    verdict = {None: "info", True: "PASS", False: "FAIL"}[passed]
    bar_text = bar.text(unit) if bar else None
    print(
        f"{metric}: {figure:,.2f} {unit}   bar: {bar_text or '-'}   {verdict}"
        + (f"   ({detail})" if detail else ""),
        flush=True,
    )
    line = {
        "metric": metric,
        "figure": figure,
        "unit": unit,
        "bar": bar_text,
        "pass": passed,
        "detail": detail,
    }
    print(PREFIX + json.dumps(line, ensure_ascii=False), flush=True)
    return passed is not False


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` (0..1) of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def freeze_heap() -> None:
    """Takes every object alive now out of the garbage collector's sight (`gc.freeze`): a
    latency measurement made from this process then does not include its own full collections
    walking the fixtures it built (up to 120 ms each, seen in the disbursement benchmark)."""
    gc.collect()
    gc.freeze()


def go_tool(name: str, module: str) -> str:
    """The path of a Go tool in .local/bin, built there with `go install <module>` the first
    time (the Go toolchain from PATH or /usr/local/go)."""
    path = REPO / ".local" / "bin" / name
    if not path.exists():
        go = shutil.which("go") or "/usr/local/go/bin/go"
        print(f"building {module} into {path.parent} (once)", flush=True)
        environment = os.environ | {"GOBIN": str(path.parent), "CGO_ENABLED": "0"}
        subprocess.run([go, "install", module], check=True, env=environment)
    return str(path)


def load_average() -> float:
    """The 1-minute load average: the machine is shared, so it says how far a figure holds."""
    return os.getloadavg()[0]


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU a process spent so far (with `children`, also its reaped children's),
    from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process, its reaped children and its live children (PostgreSQL's backends)."""
    total = cpu_seconds(pid, children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError):
            continue  # it exited meanwhile
    return total


def local_servers() -> dict[str, int]:
    """The pids of the local PostgreSQL and Kafka of deploy/local (none when external)."""
    found = {}
    if not os.environ.get("AMANA_DATABASE_URL"):
        pidfile = REPO / ".local" / "pg" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            found["PostgreSQL"] = int(pidfile.read_text().split()[0])
    if not os.environ.get("AMANA_KAFKA_BOOTSTRAP"):
        with contextlib.suppress(OSError, ValueError):
            found["Kafka"] = int((REPO / ".local" / "kafka" / "kafka.pid").read_text().strip())
    return found


class CpuMeter:
    """CPU spent meanwhile by this process, some other processes and the local servers."""

    def __init__(self, **others: int) -> None:
        self.pids = {"this process": os.getpid(), **others, **local_servers()}
        self.started = self._read()

    def _read(self) -> dict[str, float]:
        readings = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                readings[name] = tree_cpu_seconds(pid)
        return readings

    def spent(self) -> dict[str, float]:
        now = self._read()
        return {name: now[name] - self.started[name] for name in now if name in self.started}


def write_readme_section(name: str, text: str, readme: Path = REPO / "bench" / "README.md") -> None:
    """Replaces what is between the section's markers in bench/README.md (added at the end
    under a heading `name` when missing)."""
    start, end = f"<!-- {name}: written by bench/ -->", f"<!-- /{name} -->"
    content = readme.read_text()
    if start not in content or end not in content:
        content = content.rstrip("\n") + f"\n\n## {name}\n\n{start}\n{end}\n"
    head, rest = content.split(start, 1)
    readme.write_text(f"{head}{start}\n{text}{end}{rest.split(end, 1)[1]}")


def _local(script: str, command: str) -> str:
    path = REPO / "deploy" / "local" / script
    return subprocess.check_output(["bash", str(path), command], text=True).strip()


def postgres_server_url() -> str:
    """The PostgreSQL server: AMANA_DATABASE_URL, else the local cluster of deploy/local."""
    return os.environ.get("AMANA_DATABASE_URL") or _local("pg.sh", "url")


def kafka_bootstrap() -> str:
    """The Kafka broker: AMANA_KAFKA_BOOTSTRAP, else the local broker of deploy/local."""
    return os.environ.get("AMANA_KAFKA_BOOTSTRAP") or _local("kafka.sh", "bootstrap")
