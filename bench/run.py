"""`make bench`: every benchmark in turn, then one table of figures against their bars.

The benchmarks are the Makefile's `bench-*` targets, found there: a new benchmark needs only its
target. Each runs on its own (`make bench-<name>`), its output shown as it comes and kept in
.local/bench/<target>.log; the lines it prints through `_common.report` (`BENCH {json}`) become
rows. A benchmark that fails without saying which bar (it crashed, timed out, printed nothing)
is a FAIL row with its last words, and the next one runs. A full run writes the table into
bench/README.md with the date, the command and the machine; a partial run only prints it.

    make bench                          # all of them
    make bench BENCH="outbox gateway"   # some (bench-outbox, bench-gateway)
    uv run python bench/run.py --list
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from _common import PREFIX, REPO, load_average, write_readme_section

LOGS = REPO / ".local" / "bench"
TARGET = re.compile(r"^(bench-[a-z0-9-]+):", re.MULTILINE)
VERDICT = re.compile(r"\b(PASS|FAIL)\b")
MAKE = re.compile(r"^make(\[\d+\])?: ")
EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


@dataclass(frozen=True)
class Row:
    benchmark: str
    metric: str
    figure: float | None
    unit: str
    bar: str | None
    verdict: str  # PASS, FAIL or info
    detail: str = ""


@dataclass
class Outcome:
    target: str
    status: int | None = None  # None: timed out
    seconds: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)
    lines: list[str] = field(default_factory=list)


def discover(makefile: Path = REPO / "Makefile") -> list[str]:
    """The Makefile's benchmark targets, in the order they are written."""
    return TARGET.findall(makefile.read_text())


def select(targets: list[str], wanted: list[str]) -> list[str]:
    names = [w if w.startswith("bench-") else f"bench-{w}" for w in wanted]
    unknown = [n for n in names if n not in targets]
    if unknown:
        raise SystemExit(f"no such benchmark: {', '.join(unknown)} (known: {', '.join(targets)})")
    return [t for t in targets if t in names]


def run_one(target: str, timeout_s: float) -> Outcome:
    """Runs `make <target>`, echoing and keeping its output; stops it after `timeout_s`."""
    outcome = Outcome(target)
    LOGS.mkdir(parents=True, exist_ok=True)
    print(f"\n=== {target} (load {load_average():.1f})", flush=True)
    started, load = time.monotonic(), load_average()
    process = subprocess.Popen(
        ["make", "--no-print-directory", target],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group, so a timeout stops all of it
    )
    assert process.stdout is not None
    stream = process.stdout
    with open(LOGS / f"{target}.log", "w") as log:

        def pump() -> None:
            for line in stream:
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
                outcome.lines.append(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            outcome.status = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(process)
        reader.join(timeout=10)
    outcome.seconds = time.monotonic() - started
    outcome.load = (load, load_average())
    return outcome


def stop_group(process: subprocess.Popen[str]) -> None:
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def rows_of(outcome: Outcome) -> list[Row]:
    """Its BENCH lines; else its PASS/FAIL lines (a benchmark not converted yet); and a FAIL
    row when it did not end well without a failed figure to show for it."""
    rows = [parse(outcome.target, line) for line in outcome.lines if line.startswith(PREFIX)]
    if not rows:
        rows = [
            Row(outcome.target, VERDICT.sub("", line).strip(), None, "", None, match.group(1))
            for line in outcome.lines
            if (match := VERDICT.search(line))
        ]
    failed = any(row.verdict == "FAIL" for row in rows)
    if outcome.status is None:
        rows.append(failure(outcome, f"timed out after {outcome.seconds:.0f} s"))
    elif outcome.status != 0 and not failed:
        rows.append(failure(outcome, f"crashed (exit status {outcome.status})"))
    elif not rows:
        rows.append(failure(outcome, "printed no result"))
    return rows


def parse(target: str, line: str) -> Row:
    try:
        found = json.loads(line[len(PREFIX) :])
        verdict = {True: "PASS", False: "FAIL", None: "info"}[found.get("pass")]
        return Row(
            target,
            str(found["metric"]),
            float(found["figure"]),
            str(found.get("unit") or ""),
            found.get("bar"),
            verdict,
            str(found.get("detail") or ""),
        )
    except (ValueError, KeyError, TypeError) as error:
        return Row(target, f"unreadable result line: {error}", None, "", None, "FAIL", line)


def failure(outcome: Outcome, what: str) -> Row:
    return Row(outcome.target, what, None, "", None, "FAIL", last_words(outcome.lines)[:300])


def last_words(lines: list[str]) -> str:
    """The exception a Python benchmark died of (with the line after it: pydantic and others
    say there what was wrong), else its last line that is not make's."""
    said = [line.strip() for line in lines if line.strip() and not MAKE.match(line)]
    for index in range(len(said) - 1, -1, -1):
        if EXCEPTION.match(said[index]):
            return " ".join(said[index : index + 2])
    return said[-1] if said else "(no output)"


def figure_text(row: Row) -> str:
    if row.figure is None:
        return "-"
    size = abs(row.figure)
    digits = 0 if size >= 100 else 1 if size >= 10 else 2
    return f"{row.figure:,.{digits}f} {row.unit}".strip()


def machine() -> str:
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return (
        f"{os.cpu_count()} cores ({model}), {memory_kb / 1024**2:.1f} GiB memory, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def commit() -> str:
    try:
        head = subprocess.check_output(
            ["git", "-C", str(REPO), "log", "-1", "--format=%h"], text=True
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head[:80]


def table(outcomes: list[Outcome], command: str, began: datetime, loads: tuple[float, ...]) -> str:
    rows = [(outcome, row) for outcome in outcomes for row in rows_of(outcome)]
    minutes = sum(outcome.seconds for outcome in outcomes) / 60
    lines = [
        f"Run {began:%Y-%m-%d %H:%M} UTC with `{command}` ({minutes:.0f} min) at {commit()}",
        "",
        f"Machine: {machine()}. Load average (1 min): {loads[0]:.1f} at the start, "
        f"{loads[1]:.1f} at the end; the machine is shared, so the figures are indicative.",
        "",
        "| benchmark | metric | figure | bar | result | load (start → end) |",
        "|---|---|---:|---|---|---|",
    ]
    for outcome, row in rows:
        load = f"{outcome.load[0]:.1f} → {outcome.load[1]:.1f}"
        cells = [
            row.benchmark,
            row.metric,
            figure_text(row),
            row.bar or "-",
            f"**{row.verdict}**" if row.verdict == "FAIL" else row.verdict,
            load,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    notes = [(row.metric, row.detail) for _, row in rows if row.detail]
    if notes:
        lines += ["", "Details:", ""]
        lines += [f"- {metric}: {detail}" for metric, detail in notes]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: every one)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    args = parser.parse_args()
    targets = discover()
    if args.list:
        print("\n".join(targets))
        return 0
    chosen = select(targets, args.names) if args.names else targets
    began, load = datetime.now(UTC), load_average()
    outcomes = [run_one(target, args.timeout) for target in chosen]
    command = "make bench" + (f' BENCH="{" ".join(args.names)}"' if args.names else "")
    text = table(outcomes, command, began, (load, load_average()))
    print("\n" + text)
    if chosen == targets:
        write_readme_section("Latest run", text)
        print("written into bench/README.md")
    failed = any(row.verdict == "FAIL" for outcome in outcomes for row in rows_of(outcome))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
