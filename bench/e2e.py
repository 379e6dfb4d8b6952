"""End to end at scale: 100,000 households from a CSV import to a reconciled payroll, the
analytics included, against the stack `make run` started, in at most 5 minutes. Each run adds
its households to that stack's registry (another seed each time; earlier runs' providers are
suspended, so payroll leaves their households out).

The demo's cycle (demo/cycle.py) at scale, through the gateway with development tokens: a
provider paying through the PSP sandbox (settling at once, 2% failing), the registry
generator's households imported as one CSV with their payment preference for it, a programme
whose payroll is checked against the rules computed in Python, generation triggered, approval
by another user, and then the services alone. Each stage is timed from the end of the one
before, to the first poll that sees it done (stages that overlap show a short second one):

  import          the upload to the import job done (and its report read)
  projection      until a simulation over payroll's projection gives the expected payroll
  generation      the programme activated, cycle 1 triggered, until PENDING_APPROVAL
  approval        the approval until disbursement has the payroll's first PayrollApproved chunk
  payments        until every chunk is in and disbursement has every line as a payment (the
                  payroll released: its payments and batches are created in one transaction)
  dispatch        until no payment is pending (every batch sent to the sandbox)
  settlement      until none is sent either (every result applied)
  reconciliation  until the reconciliation is complete (PayrollReconciled) and the equality
                  holds in count and amount
  analytics       until analytics' outcomes report has every ended payment of the programme

Generating the households and computing the expected payroll come before the clock starts.

    make run && make bench-e2e          # BENCH_ARGS="--households 10000" for a smaller run
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvloop
from _common import REPO, at_most, load_average, report

sys.path.insert(0, str(REPO))  # the demo's driver, run from the repository (`python -m demo`)

from demo import plan
from demo.cycle import Demo, Options, run
from demo.stack import DemoFailed, wait_for

from registry.generate import GeneratedHousehold

BAR_S = 300.0
STAGES = (
    "import",
    "projection",
    "generation",
    "approval",
    "payments",
    "dispatch",
    "settlement",
    "reconciliation",
    "analytics",
)


@dataclass
class Clock:
    """When each stage ended, seconds from the start of the import."""

    started: float = 0.0
    ended: dict[str, float] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.started = time.monotonic()

    def end(self, stage: str) -> None:
        if stage not in self.ended:
            self.ended[stage] = time.monotonic() - self.started
            self.loads.append(load_average())
            print(f"--- {stage} done at {self.ended[stage]:.1f} s", flush=True)

    def seconds(self, stage: str) -> float:
        index = STAGES.index(stage)
        before = self.ended[STAGES[index - 1]] if index else 0.0
        return self.ended[stage] - before


CLOCK = Clock()


class EndToEnd(Demo):
    async def run(self) -> None:
        await self.stack.sign_in()
        await self.retire_earlier_runs()
        provider_id = await self.register_provider()
        await self.open_channels(provider_id)
        households = plan.paid_through(
            plan.population(self.options.households, self.options.seed), provider_id
        )
        source = f"bench-{self.figures.programme_code}"
        schedule = plan.Schedule.due_on(datetime.now(UTC).date())
        expected = self.expect(households, {}, schedule)
        programme_id = await self.define_programme(schedule, expected)
        await self.registry_knows(households[0], source)

        CLOCK.start()
        ids = await self.enrol(households, source)
        CLOCK.end("import")
        households = [household for household in households if household.code in ids]
        if self.figures.enrolled["flagged"]:
            expected = self.expect(households, await self.standings(ids), schedule)
        await self.projected(programme_id, expected)
        CLOCK.end("projection")
        await self.activate(programme_id, schedule)
        payroll = await self.generated_payroll(programme_id, expected)
        CLOCK.end("generation")
        await self.approve(payroll)
        state = await self.paid(payroll)
        await self.report(payroll, state)
        await self.in_analytics(state)
        await self.retire(programme_id, provider_id)

    async def registry_knows(self, first: GeneratedHousehold, source: str) -> None:
        """The registry learns the provider from its events: until then the import refuses
        the preference. One household is imported until it is taken (the full import updates
        it)."""

        async def taken() -> bool | None:
            try:
                await self.enrol([first], source)
            except DemoFailed:
                return None
            return True

        await wait_for("the registry learns the provider", taken, timeout_s=self.timeout)

    async def standings(self, ids: dict[str, str]) -> dict[str, plan.Standing]:
        """The households the import flagged for duplicate review (left out of the payroll);
        the others are active, as an import enrols them (one it refused failed `enrol`)."""
        codes = {household_id: code for code, household_id in ids.items()}
        flagged = await self._all("registrar", "/registry/households?duplicate_review_open=true")
        return {
            codes[h["id"]]: plan.Standing(h["status"], under_review=True)
            for h in flagged
            if h["id"] in codes
        }

    async def paid(self, payroll: dict[str, Any]) -> plan.Reconciliation:
        """Disbursement's reconciliation polled until complete, each stage's end noted."""
        path = f"/reconciliation/{payroll['id']}"

        async def complete() -> plan.Reconciliation | None:
            answer = await self.stack.call("finance", "GET", path, expect=(200, 404))
            if answer.status_code == 404:
                return None
            CLOCK.end("approval")
            body = answer.json()
            if body["payroll"]["status"] == "held":
                raise DemoFailed(
                    f"disbursement holds the payroll: {body['payroll']['hold_reason']}"
                )
            state = plan.Reconciliation.from_answer(body)
            if body["payroll"]["status"] == "staging":
                return None
            if state.payroll_count == payroll["line_count"]:
                CLOCK.end("payments")
            counts = ", ".join(f"{s} {c}" for s, (c, _) in state.by_status.items() if c)
            self.progress.changed("disbursement", f"{body['payroll']['status']}: {counts}")
            if "payments" in CLOCK.ended and state.by_status["pending"][0] == 0:
                CLOCK.end("dispatch")
            if "dispatch" in CLOCK.ended and state.open_count == 0:
                CLOCK.end("settlement")
            holds = not state.problems(payroll["line_count"], payroll["total_amount_minor"])
            if "settlement" in CLOCK.ended and body["complete"] and body["balanced"] and holds:
                CLOCK.end("reconciliation")
                return state
            return None

        return await wait_for(
            "the payroll reconciled", complete, timeout_s=self.timeout, interval_s=0.5
        )

    async def in_analytics(self, state: plan.Reconciliation) -> None:
        await super().in_analytics(state)
        CLOCK.end("analytics")


def options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument(
        "--seed",
        type=int,
        default=int(time.time()) % 1_000_000,
        help="new households each run (the default, from the time): a household imported "
        "again keeps the preference it had, an earlier run's provider, suspended",
    )
    parser.add_argument("--gateway", default=Options.gateway)
    parser.add_argument("--sandbox", default=Options.sandbox)
    parser.add_argument("--stage-timeout-s", type=float, default=600)
    parsed = parser.parse_args(argv)
    return Options(
        gateway=parsed.gateway,
        sandbox=parsed.sandbox,
        households=parsed.households,
        seed=parsed.seed,
        scheduler_wait_s=0,  # triggered at once: the scheduler's tick is not what is measured
        stage_timeout_s=parsed.stage_timeout_s,
        label="E2E",
        settle_delay_s=0,
        failure_rate=0.02,
        results_per_webhook=1000,
        # Does not bind: every payable household is paid (the formula caps each at KES 5,000).
        budget_per_cycle_minor=parsed.households * plan.FORMULA["cap_minor"],
    )


def main(argv: list[str]) -> int:
    chosen = options(argv)
    status = uvloop.run(run(chosen, EndToEnd))
    done = [s for s in STAGES if s in CLOCK.ended]
    for stage in done:
        report(f"e2e {stage}", CLOCK.seconds(stage), "s")
    total = CLOCK.ended[done[-1]] if done else 0.0
    loads = CLOCK.loads or [load_average()]
    finished = status == 0 and len(done) == len(STAGES)
    passed = report(
        f"e2e: {chosen.households:,} households, import to reconciled payroll and analytics",
        total,
        "s",
        at_most(BAR_S),
        ok=finished,
        detail=f"load average {sum(loads) / len(loads):.1f} mean, {max(loads):.1f} max"
        + ("" if finished else f"; stopped after {done[-1] if done else 'nothing'}"),
    )
    return 0 if passed and finished else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
