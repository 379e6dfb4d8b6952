"""The stages of the demo, in order, each waiting a bounded time for the services."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from demo import plan
from demo.stack import DemoFailed, RateLimit, Stack, wait_for
from registry.generate import GeneratedHousehold, write_csv

# Under the gateway's limit for one client (100 requests a second).
PREFERENCES_PER_S = 90


@dataclass(frozen=True)
class Options:
    gateway: str = "http://127.0.0.1:8000"
    sandbox: str = "http://127.0.0.1:8190"
    households: int = 500
    seed: int = 7
    scheduler_wait_s: float = 40
    stage_timeout_s: float = 180
    summary: Path | None = None
    # Codes of a run's provider and programme start with it; earlier runs with it are retired.
    label: str = "DEMO"
    settle_delay_s: float = plan.SANDBOX_SETTLE_DELAY_S
    failure_rate: float = plan.SANDBOX_FAILURE_RATE
    results_per_webhook: int = plan.SANDBOX_RESULTS_PER_WEBHOOK
    budget_per_cycle_minor: int = plan.BUDGET_PER_CYCLE_MINOR


@dataclass
class Figures:
    """What the run printed, for a test to check (also written as JSON with --summary)."""

    seed: int
    households_generated: int
    provider_code: str = ""
    programme_code: str = ""
    payroll_id: str = ""
    enrolled: dict[str, int] = field(default_factory=dict)
    expected: dict[str, Any] = field(default_factory=dict)
    payroll: dict[str, Any] = field(default_factory=dict)
    reconciliation: dict[str, dict[str, int]] = field(default_factory=dict)
    failed_by_reason: dict[str, dict[str, int]] = field(default_factory=dict)
    exceptions: int = 0
    fees_minor: int = 0
    seconds: float = 0.0


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = ""

    def say(self, stage: str, message: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {stage:<13} {message}", flush=True)

    def changed(self, stage: str, message: str) -> None:
        """Says `message` unless it is what was said last (for polling loops)."""
        if message != self.last:
            self.last = message
            self.say(stage, message)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


async def run(options: Options, stages: type[Demo] | None = None) -> int:
    """Runs `stages` (the demo's by default); 1 when one failed."""
    stages = stages or Demo
    progress = Progress()
    started = datetime.now(UTC)
    stamp = started.strftime("%y%m%d%H%M%S")
    provider_code, programme_code = plan.run_codes(options.seed, stamp, options.label)
    figures = Figures(options.seed, options.households, provider_code, programme_code)
    async with Stack(options.gateway, options.sandbox) as stack:
        try:
            await stages(stack, options, progress, figures).run()
        except DemoFailed as failure:
            progress.say("FAILED", str(failure))
            return 1
        finally:
            figures.seconds = round(progress.elapsed(), 1)
            if options.summary is not None:
                options.summary.parent.mkdir(parents=True, exist_ok=True)
                options.summary.write_text(json.dumps(asdict(figures), indent=2) + "\n")
    return 0


class Demo:
    def __init__(self, stack: Stack, options: Options, progress: Progress, figures: Figures):
        self.stack = stack
        self.options = options
        self.progress = progress
        self.figures = figures
        self.timeout = options.stage_timeout_s

    async def run(self) -> None:
        await self.stack.sign_in()
        self.progress.say("stack", f"gateway {self.stack.gateway}, sandbox {self.stack.sandbox}")
        await self.retire_earlier_runs()
        provider_id = await self.register_provider()
        await self.open_channels(provider_id)
        households = plan.population(self.options.households, self.options.seed)
        ids = await self.enrol(
            plan.without_preference(households), f"demo-seed-{self.options.seed}"
        )
        households = [household for household in households if household.code in ids]
        standing = await self.set_preferences(households, ids, provider_id)
        schedule = plan.Schedule.due_on(datetime.now(UTC).date())
        expected = self.expect(households, standing, schedule)
        programme_id = await self.define_programme(schedule, expected)
        await self.projected(programme_id, expected)
        await self.activate(programme_id, schedule)
        payroll = await self.generated_payroll(programme_id, expected)
        await self.approve(payroll)
        reconciliation = await self.settled(payroll)
        await self.report(payroll, reconciliation)
        await self.in_analytics(reconciliation)
        await self.retire(programme_id, provider_id)

    # --- earlier runs ---------------------------------------------------------------------

    async def retire_earlier_runs(self) -> None:
        """Earlier runs close their programme and suspend their provider at the end; one that
        stopped half-way is retired here, so that its programme generates nothing more and
        its households are paid through this run's provider only."""
        programmes = await self._all("programme-manager", "/programmes?status=active")
        providers = await self._all("admin", "/providers?status=active")
        provider_prefix, programme_prefix = plan.earlier_run_prefixes(self.options.label)
        closed = [p for p in programmes if p["code"].startswith(programme_prefix)]
        suspended = [p for p in providers if p["code"].startswith(provider_prefix)]
        for programme in closed:
            await self._close_programme(programme["id"])
        for provider in suspended:
            await self._suspend_provider(provider["id"])
        self.progress.say(
            "earlier runs",
            f"{len(closed)} {self.options.label} programme(s) closed, {len(suspended)} "
            f"{self.options.label} provider(s) suspended",
        )

    async def _all(self, role: str, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        joiner = "&" if "?" in path else "?"
        for _ in range(1000):
            page_path = f"{path}{joiner}limit=200" + (f"&cursor={cursor}" if cursor else "")
            page = (await self.stack.call(role, "GET", page_path)).json()
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items

    async def _close_programme(self, programme_id: str) -> None:
        await self._end("programme-manager", f"/programmes/{programme_id}/close")

    async def _suspend_provider(self, provider_id: str) -> None:
        await self._end("admin", f"/providers/{provider_id}/suspend")

    async def _end(self, role: str, path: str) -> None:
        """POSTs a run's end (409: it had ended already)."""
        reason = {"reason": "the demo run is over"}
        await self.stack.call(role, "POST", path, json=reason, expect=(200, 409))

    # --- the provider ---------------------------------------------------------------------

    async def register_provider(self) -> UUID:
        body = {
            "code": self.figures.provider_code,
            "legal_name": "Amana demo PSP (sandbox)",
            "country": "KE",
            "currencies": [plan.CURRENCY],
            "mechanisms": [plan.MECHANISM],
            "service_areas": plan.service_areas(),
            "fee": {"currency": plan.CURRENCY, "fixed_minor": 1_000, "basis_points": 50},
            "delivery": {"mode": "api", "base_url": self.stack.sandbox},
        }
        answer = await self.stack.call(
            "admin",
            "POST",
            "/providers",
            json=body,
            expect=(201,),
            headers={"Idempotency-Key": self.figures.provider_code},
        )
        provider_id = UUID(answer.json()["id"])
        self.progress.say(
            "provider",
            f"registered {self.figures.provider_code} ({provider_id}): mobile money in "
            f"{plan.CURRENCY}, API at {self.stack.sandbox}",
        )
        return provider_id

    async def open_channels(self, provider_id: UUID) -> None:
        """Disbursement generates the webhook secret and holds the API credential; the
        sandbox account gets both (a real PSP would be told them out of band)."""
        channels = f"/channels/{provider_id}"

        async def known() -> bool | None:
            answer = await self.stack.call(
                "admin", "GET", f"{channels}/webhook-secrets", expect=(200, 404)
            )
            return True if answer.status_code == 200 else None

        await wait_for("disbursement learns the provider", known, timeout_s=self.timeout)
        secret = (
            await self.stack.call("admin", "POST", f"{channels}/webhook-secrets", expect=(201,))
        ).json()["secret"]
        credential = "demo-" + secrets.token_urlsafe(24)
        await self.stack.call(
            "admin",
            "PUT",
            f"{channels}/api-credential",
            json={"credential": credential},
            expect=(200, 204),
        )
        account = {
            "api_key": credential,
            "webhook_url": f"{self.stack.gateway}/webhooks/providers/{provider_id}",
            "webhook_secret": secret,
            "settle_delay_s": self.options.settle_delay_s,
            "failure_rate": self.options.failure_rate,
            "results_per_webhook": self.options.results_per_webhook,
            "seed": self.options.seed,
        }
        await self.stack.call(
            "admin",
            "PUT",
            f"/sandbox/providers/{provider_id}",
            json=account,
            sandbox=True,
            expect=(200, 201),
        )
        self.progress.say(
            "channels",
            f"webhook secret and API credential set; sandbox account: settles after "
            f"{self.options.settle_delay_s:g} s, {self.options.failure_rate:.0%} fail, seed "
            f"{self.options.seed}",
        )

    # --- the households -------------------------------------------------------------------

    async def enrol(self, households: list[GeneratedHousehold], source: str) -> dict[str, str]:
        """Imports the households as one CSV (a later run with the same `source` updates the
        same households), answers household code -> id."""
        out = io.StringIO()
        write_csv(households, out)
        self.progress.say(
            "registry",
            f"generated {len(households)} households (seed {self.options.seed}); importing "
            f"them as source {source}",
        )
        job = (
            await self.stack.call(
                "registrar",
                "POST",
                f"/registry/imports?source={source}",
                content=out.getvalue().encode(),
                headers={"content-type": "text/csv"},
                expect=(202,),
            )
        ).json()

        async def done() -> dict[str, Any] | None:
            state = (
                await self.stack.call("registrar", "GET", f"/registry/imports/{job['id']}")
            ).json()
            self.progress.changed(
                "registry",
                f"import {state['status']} ({state['phase']}): {state['processed']}/"
                f"{len(households)} processed",
            )
            if state["status"] == "failed":
                raise DemoFailed(f"the import failed: {state['error']}")
            return state if state["status"] == "done" else None

        state = await wait_for("the import", done, timeout_s=self.timeout, interval_s=0.5)
        counts = {k: state[k] for k in ("created", "updated", "rejected", "flagged")}
        self.figures.enrolled = counts
        report = await self.stack.call(
            "registrar", "GET", f"/registry/imports/{job['id']}/report?format=ndjson"
        )
        lines = [json.loads(line) for line in report.text.splitlines()]
        ids = {line["source_id"]: line["household_id"] for line in lines if line["household_id"]}
        self.progress.say(
            "registry",
            "enrolled: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
        )
        refused = [line for line in lines if not line["household_id"]]
        held_elsewhere = [line for line in refused if _identifier_taken(line)]
        if len(held_elsewhere) < len(refused) or not ids:
            raise DemoFailed(f"{len(households) - len(ids)} households were not enrolled")
        if held_elsewhere:
            self.progress.say(
                "registry",
                f"{len(held_elsewhere)} households left out: an earlier run's household holds "
                "one of their generated identifiers (the registry flags that, as it should)",
            )
        return ids

    async def set_preferences(
        self, households: list[GeneratedHousehold], ids: dict[str, str], provider_id: UUID
    ) -> dict[str, plan.Standing]:
        """Every household is paid by mobile money through this run's provider (PUT
        payment-preference with If-Match); answers how the registry holds each."""
        held = {h["id"]: h for h in await self._all("registrar", "/registry/households")}

        async def put(household: GeneratedHousehold, expect: tuple[int, ...] = (200,)) -> int:
            household_id = ids[household.code]
            answer = await self.stack.call(
                "registrar",
                "PUT",
                f"/registry/households/{household_id}/payment-preference",
                json=plan.preference_for(household, provider_id),
                headers={"If-Match": f'"{held[household_id]["version"]}"'},
                expect=expect,
            )
            return answer.status_code

        async def first_accepted() -> bool | None:  # 422 until the registry knows the provider
            return True if await put(households[0], (200, 422)) == 200 else None

        await wait_for("the registry learns the provider", first_accepted, timeout_s=self.timeout)
        waiting = iter(households[1:])
        limit = RateLimit(PREFERENCES_PER_S)
        done = 1

        async def worker() -> None:
            nonlocal done
            for household in waiting:
                await limit.wait()
                await put(household)
                done += 1
                if done % 250 == 0:
                    self.progress.say("registry", f"payment preferences: {done}/{len(households)}")

        await asyncio.gather(*(worker() for _ in range(16)))
        self.progress.say(
            "registry",
            f"payment preferences set: {len(households)} households paid by mobile money "
            f"through {self.figures.provider_code}",
        )
        return {
            h.code: plan.Standing(
                held[ids[h.code]]["status"], bool(held[ids[h.code]]["duplicate_review_open"])
            )
            for h in households
        }

    # --- the programme and its payroll ------------------------------------------------------

    async def define_programme(self, schedule: plan.Schedule, expected: plan.Expected) -> str:
        body = {
            "code": self.figures.programme_code,
            "name": "Amana demo cash transfer",
            "description": "Made by `make demo`: households in need by PMT score, large "
            "food-insecure households, households with a disabled member.",
            "currency": plan.CURRENCY,
            "start_date": schedule.start_date.isoformat(),
            "frequency": schedule.frequency(),
            "budget_per_cycle_minor": self.options.budget_per_cycle_minor,
            "carry_over": True,
            "generation_lead_days": 0,
            "eligibility": plan.ELIGIBILITY,
            "formula": plan.FORMULA,
            "budget_priority": plan.BUDGET_PRIORITY,
        }
        programme = (
            await self.stack.call(
                "programme-manager",
                "POST",
                "/programmes",
                json=body,
                expect=(201,),
                headers={"Idempotency-Key": self.figures.programme_code},
            )
        ).json()
        self.progress.say(
            "payroll",
            f"programme {programme['code']} defined (draft); expected from the rules: "
            f"{expected.eligible} eligible, {expected.on_payroll} on the payroll, "
            f"{plan.money(expected.total_amount_minor)}",
        )
        return str(programme["id"])

    def expect(
        self,
        households: list[GeneratedHousehold],
        standing: dict[str, plan.Standing],
        schedule: plan.Schedule,
    ) -> plan.Expected:
        expected = plan.expected_payroll(households, standing, schedule.start_date)
        self.figures.expected = asdict(expected)
        return expected

    async def projected(self, programme_id: str, expected: plan.Expected) -> None:
        """Waits until a simulation over payroll's projection gives the expected payroll."""

        async def projected() -> bool | None:
            tally = (
                await self.stack.call(
                    "programme-manager", "POST", f"/programmes/{programme_id}/simulate", json={}
                )
            ).json()["current"]
            self.progress.changed(
                "payroll",
                f"simulation over the projection: {tally['eligible']} eligible, "
                f"{tally['on_payroll']} payable, {plan.money(tally['total_amount_minor'])}, "
                f"exclusions {_nonzero(tally['exclusions'])}"
                + _others(expected, tally["exclusions"]),
            )
            return True if not _tally_differences(expected, tally) else None

        await wait_for(
            "payroll's projection to match the enrolled households (households paid through "
            "another provider in this stack's registry? the demo expects to pay only its own)",
            projected,
            timeout_s=self.timeout,
            interval_s=1,
        )

    async def activate(self, programme_id: str, schedule: plan.Schedule) -> None:
        await self.stack.call(
            "programme-manager", "POST", f"/programmes/{programme_id}/activate", json={}
        )
        self.progress.say(
            "payroll",
            f"programme active: monthly from {schedule.start_date}, cycle 1 pays from day "
            f"{schedule.payment_day} for {schedule.window_days} days",
        )

    async def generated_payroll(self, programme_id: str, expected: plan.Expected) -> dict[str, Any]:
        """The scheduler generates cycle 1 by itself; after `scheduler_wait_s` the demo
        triggers it as an operator would (409: the scheduler was first)."""

        async def scheduled() -> str | None:
            cycles = await self._all("programme-manager", f"/programmes/{programme_id}/cycles")
            first = next((c for c in cycles if c["sequence"] == 1), None)
            return first["payroll_id"] if first and first["payroll_id"] else None

        try:
            payroll_id = await wait_for(
                "the scheduler", scheduled, timeout_s=self.options.scheduler_wait_s
            )
            self.progress.say("payroll", f"the scheduler generates cycle 1: payroll {payroll_id}")
        except DemoFailed:
            await self.stack.call(
                "programme-manager",
                "POST",
                f"/programmes/{programme_id}/payrolls",
                json={"cycle_sequence": 1},
                expect=(202, 409),
            )
            payroll_id = await wait_for("the triggered payroll", scheduled, timeout_s=30)
            self.progress.say(
                "payroll",
                f"the scheduler had not run within {self.options.scheduler_wait_s:.0f} s: "
                f"cycle 1 triggered, payroll {payroll_id}",
            )
        self.figures.payroll_id = payroll_id

        async def generated() -> dict[str, Any] | None:
            payroll = (
                await self.stack.call("programme-manager", "GET", f"/payrolls/{payroll_id}")
            ).json()
            step = payroll.get("progress") or {}
            self.progress.changed(
                "payroll",
                f"{payroll['status']}"
                + (f" ({step['phase']}: {step['rows_done']}/{step['rows_total']})" if step else ""),
            )
            if payroll["status"] in ("FAILED", "REJECTED"):
                raise DemoFailed(f"payroll {payroll_id} {payroll['status']}: {payroll['failure']}")
            return payroll if payroll["status"] == "PENDING_APPROVAL" else None

        payroll = await wait_for("the payroll's generation", generated, timeout_s=self.timeout)
        self.figures.payroll = {
            k: payroll[k]
            for k in ("eligible_count", "line_count", "total_amount_minor", "exclusions")
        }
        self.progress.say(
            "payroll",
            f"generated by {payroll['generated_by']}: {payroll['eligible_count']} eligible, "
            f"{payroll['line_count']} lines, {plan.money(payroll['total_amount_minor'])}, "
            f"exclusions {_nonzero(payroll['exclusions'])}",
        )
        differences = expected.differences(
            payroll["eligible_count"],
            payroll["line_count"],
            payroll["total_amount_minor"],
            payroll["exclusions"],
        )
        if differences:
            raise DemoFailed("the payroll is not what the rules give: " + "; ".join(differences))
        return payroll

    async def approve(self, payroll: dict[str, Any]) -> None:
        """Maker-checker: the approver is neither the scheduler nor whoever triggered it."""
        approved = (
            await self.stack.call(
                "payroll-approver",
                "POST",
                f"/payrolls/{payroll['id']}/approve",
                headers={"Idempotency-Key": f"approve-{payroll['id']}"},
            )
        ).json()
        self.progress.say(
            "payroll",
            f"{approved['status']} by {approved['decided_by']} (maker: "
            f"{approved['generated_by']}); PayrollApproved goes to disbursement",
        )

    # --- disbursement -----------------------------------------------------------------------

    async def settled(self, payroll: dict[str, Any]) -> plan.Reconciliation:
        path = f"/reconciliation/{payroll['id']}"

        async def complete() -> plan.Reconciliation | None:
            answer = await self.stack.call("finance", "GET", path, expect=(200, 404))
            if answer.status_code == 404:
                self.progress.changed("disbursement", "waiting for PayrollApproved")
                return None
            body = answer.json()
            state = plan.Reconciliation.from_answer(body)
            counts = ", ".join(f"{s} {c}" for s, (c, _) in state.by_status.items() if c)
            self.progress.changed(
                "disbursement",
                f"payroll {body['payroll']['status']}: {state.payroll_count} payments"
                + (f" ({counts})" if counts else ""),
            )
            if body["payroll"]["status"] == "held":
                raise DemoFailed(
                    f"disbursement holds the payroll: {body['payroll']['hold_reason']}"
                )
            done = state.payroll_count == payroll["line_count"] and state.open_count == 0
            return state if done and body["complete"] else None

        return await wait_for(
            "every payment settled, failed or expired", complete, timeout_s=self.timeout
        )

    async def in_analytics(self, state: plan.Reconciliation) -> None:
        """Analytics' outcomes report on this run's programme counts every ended payment, as
        disbursement's reconciliation does (its ingest is a consumer of the same events)."""
        ended = {s: state.by_status[s][0] for s in ("settled", "failed", "expired", "reversed")}
        path = f"/reports/outcomes?programme={self.figures.programme_code}"

        async def ingested() -> bool | None:
            rows = (await self.stack.call("admin", "GET", path)).json()["rows"]
            counted = {s: sum(int(r.get(s) or 0) for r in rows) for s in ended}
            self.progress.changed("analytics", f"outcomes {counted} (disbursement: {ended})")
            return True if counted == ended else None

        await wait_for(
            "analytics has the payments", ingested, timeout_s=self.timeout, interval_s=0.5
        )
        self.progress.say("analytics", f"outcomes report agrees with the reconciliation: {ended}")

    async def report(self, payroll: dict[str, Any], state: plan.Reconciliation) -> None:
        path = f"/reconciliation/{payroll['id']}"
        body = (await self.stack.call("finance", "GET", path)).json()
        export = await self.stack.call("finance", "GET", f"{path}/export.csv")
        reasons = plan.failures_by_reason(export.text)
        self.figures.reconciliation = {
            s: {"count": c, "amount_minor": a} for s, (c, a) in state.by_status.items()
        }
        self.figures.failed_by_reason = {
            code: {"count": c, "amount_minor": a} for code, (c, a) in reasons.items()
        }
        self.figures.exceptions = body["exceptions"]
        self.figures.fees_minor = body["fees_minor"]
        for line in _reconciliation_lines(payroll, state, reasons, body, self.figures):
            print(line, flush=True)
        problems = state.problems(payroll["line_count"], payroll["total_amount_minor"])
        if problems or not body["balanced"]:
            raise DemoFailed(
                "the reconciliation does not match the payroll: " + "; ".join(problems)
            )

    async def retire(self, programme_id: str, provider_id: UUID) -> None:
        await self._close_programme(programme_id)
        await self._suspend_provider(str(provider_id))
        self.progress.say(
            "done",
            f"programme {self.figures.programme_code} closed, provider "
            f"{self.figures.provider_code} suspended",
        )


def _identifier_taken(line: dict[str, Any]) -> bool:
    """A report line refused only because another household holds one of its identifiers."""
    errors = line["errors"] or []
    return bool(errors) and all(error["code"] == "identifier-taken" for error in errors)


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def _others(expected: plan.Expected, exclusions: dict[str, int]) -> str:
    others = expected.others(exclusions)
    return f"; other households meeting the rules, left out: {others}" if others else ""


def _others_count(payroll: dict[str, Any], expected: dict[str, Any]) -> int:
    return int(payroll["eligible_count"]) - int(expected["eligible"])


def _tally_differences(expected: plan.Expected, tally: dict[str, Any]) -> list[str]:
    return expected.differences(
        tally["eligible"], tally["on_payroll"], tally["total_amount_minor"], tally["exclusions"]
    )


def _reconciliation_lines(
    payroll: dict[str, Any],
    state: plan.Reconciliation,
    reasons: dict[str, tuple[int, int]],
    body: dict[str, Any],
    figures: Figures,
) -> list[str]:
    expected = figures.expected
    lines = [
        "",
        f"Reconciliation of payroll {payroll['id']} ({figures.programme_code}, cycle 1)",
        f"  households enrolled   {figures.households_generated:>7}   (seed {figures.seed}: "
        + ", ".join(f"{v} {k}" for k, v in figures.enrolled.items())
        + ")",
        f"  eligible              {payroll['eligible_count']:>7}   ({expected['eligible']} of "
        "this population, as computed here"
        + (f"; {others} others, left out" if (others := _others_count(payroll, expected)) else "")
        + ")",
        f"  on the payroll        {payroll['line_count']:>7}   "
        f"{plan.money(payroll['total_amount_minor']):>20}",
    ]
    for status in plan.STATUSES:
        count, amount = state.by_status[status]
        lines.append(f"  {status:<21} {count:>7}   {plan.money(amount):>20}")
    for code, (count, amount) in reasons.items():
        lines.append(f"    failed {code:<14} {count:>7}   {plan.money(amount):>20}")
    count = sum(c for c, _ in state.by_status.values())
    amount = sum(a for _, a in state.by_status.values())
    holds = (count, amount) == (payroll["line_count"], payroll["total_amount_minor"])
    lines += [
        f"  settled + failed + expired + reversed + pending + sent = {count} payments, "
        f"{plan.money(amount)}",
        f"  payroll                                                 = {payroll['line_count']} "
        f"lines, {plan.money(payroll['total_amount_minor'])}   "
        + ("MATCHES" if holds else "DOES NOT MATCH"),
        f"  fees {plan.money(body['fees_minor'])}, reconciliation exceptions "
        f"{body['exceptions']}, balanced {str(body['balanced']).lower()}",
        "",
    ]
    return lines
