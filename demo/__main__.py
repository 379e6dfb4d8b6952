"""python -m demo [--households N] [--seed S] [--summary PATH]: see README, "The demo"."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvloop

from demo.cycle import Options, run


def options(argv: list[str]) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="The whole cycle against the stack `make run` started: enrolment, a "
        "provider paying through the PSP sandbox, a programme, its scheduled payroll, approval "
        "by another user, dispatch, settlement and the reconciliation.",
    )
    parser.add_argument("--gateway", default=defaults.gateway)
    parser.add_argument("--sandbox", default=defaults.sandbox, help="the PSP sandbox")
    parser.add_argument("--households", type=int, default=defaults.households)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--scheduler-wait-s",
        type=float,
        default=defaults.scheduler_wait_s,
        help="how long the scheduler may take before the demo triggers the cycle itself",
    )
    parser.add_argument(
        "--stage-timeout-s",
        type=float,
        default=defaults.stage_timeout_s,
        help="the longest any one stage may take",
    )
    parser.add_argument("--summary", type=Path, help="write the figures there as JSON")
    parsed = parser.parse_args(argv)
    if not 1 <= parsed.households <= 5000:
        parser.error("--households: 1 to 5000")
    return Options(
        gateway=parsed.gateway,
        sandbox=parsed.sandbox,
        households=parsed.households,
        seed=parsed.seed,
        scheduler_wait_s=parsed.scheduler_wait_s,
        stage_timeout_s=parsed.stage_timeout_s,
        summary=parsed.summary,
    )


if __name__ == "__main__":
    sys.exit(uvloop.run(run(options(sys.argv[1:]))))
