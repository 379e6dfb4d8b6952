"""What the demo asks of the stack and what it must get back, worked out without the stack.

The population is the registry's generator with a fixed seed, so the households, who is
eligible and what each receives are the same on every run; the expected payroll is computed
here with payroll's pure domain code (the Python twin of its SQL) and compared with what the
service generates. Settlement outcomes are the sandbox's: decided from its seed and the payment
number, so they repeat on a fresh stack (payment numbers come from a global sequence).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from payroll.domain import (
    Household,
    Member,
    ProgrammeRules,
    attribute_schema,
    evaluate,
    parse_programme_rules,
)
from registry.generate import GeneratedHousehold, Generator, GeneratorConfig, ProviderOption
from registry.reference import load_locations
from registry.settings import REFERENCE

CURRENCY = "KES"
MECHANISM = "mobile_money"
# The generator draws each household's payment preference from its provider options; the demo
# enrols without it and sets it for the provider it registered (this id is never sent).
PLACEHOLDER_PROVIDER = UUID(int=0)

# Households in need by the proxy means test, large food-insecure ones, and those caring for a
# disabled member. No age rule: the figures stay the same whatever the month of the run.
ELIGIBILITY: dict[str, Any] = {
    "any": [
        {"field": "attributes.pmt_score", "op": "<", "value": 30},
        {
            "all": [
                {"field": "attributes.food_insecure", "op": "=", "value": True},
                {"field": "household_size", "op": ">=", "value": 5},
            ]
        },
        {"field": "members", "where": {"disability": True}, "op": ">=", "value": 1},
    ]
}
# KES 2,500 a household, KES 300 a member up to 6, KES 500 a disabled member up to 2, at most
# KES 5,000.
FORMULA: dict[str, Any] = {
    "base_amount_minor": 250_000,
    "top_ups": [
        {"where": {}, "amount_minor": 30_000, "max_count": 6},
        {"where": {"disability": True}, "amount_minor": 50_000, "max_count": 2},
    ],
    "cap_minor": 500_000,
}
BUDGET_PRIORITY: list[dict[str, str]] = [{"by": "attributes.pmt_score", "order": "asc"}]
BUDGET_PER_CYCLE_MINOR = 5_000_000_000  # does not bind: every payable household is paid
PAYMENT_WINDOW_DAYS = 10
# Payment outcomes at the sandbox: 10% fail, with its default reason mix.
SANDBOX_FAILURE_RATE = 0.1
SANDBOX_SETTLE_DELAY_S = 2
SANDBOX_RESULTS_PER_WEBHOOK = 100
# Every payment ends in one of these; the equality is over all of them.
STATUSES = ("settled", "failed", "expired", "reversed", "pending", "sent")


def population(households: int, seed: int) -> list[GeneratedHousehold]:
    """The seeded households (no near-duplicates: the demo pays, it does not deduplicate),
    each with a mobile money preference drawn for the placeholder provider."""
    config = GeneratorConfig(
        households=households,
        seed=seed,
        duplicate_rate=0.0,
        providers=(ProviderOption(PLACEHOLDER_PROVIDER, MECHANISM, CURRENCY),),
    )
    return list(Generator(config, load_locations(REFERENCE / "locations_ke.csv")).households())


def service_areas() -> list[str]:
    """Every top-level area of the sample hierarchy: the provider serves the whole country."""
    hierarchy = load_locations(REFERENCE / "locations_ke.csv")
    return sorted({leaf.split("-")[0] + "-" + leaf.split("-")[1] for leaf in hierarchy.leaves()})


def without_preference(households: Iterable[GeneratedHousehold]) -> list[GeneratedHousehold]:
    """Copies for the import: the preference is set afterwards, for this run's provider."""
    return [
        GeneratedHousehold(h.code, {k: v for k, v in h.body.items() if k != "payment_preference"})
        for h in households
    ]


def preference_for(household: GeneratedHousehold, provider_id: UUID) -> dict[str, Any]:
    return {**household.body["payment_preference"], "provider_id": str(provider_id)}


def paid_through(
    households: Iterable[GeneratedHousehold], provider_id: UUID
) -> list[GeneratedHousehold]:
    """Copies whose preference names `provider_id` (imported with it, not set afterwards)."""
    return [
        GeneratedHousehold(h.code, {**h.body, "payment_preference": preference_for(h, provider_id)})
        for h in households
    ]


def eligibility_attributes() -> dict[str, str]:
    """The types of the registry's default attribute schema (what `make run` gives payroll)."""
    schema = json.loads((REFERENCE / "attributes.schema.json").read_text())
    return {name: spec["type"] for name, spec in schema["properties"].items()}


@dataclass(frozen=True)
class Standing:
    """A household as the registry holds it after enrolment."""

    status: str = "active"
    under_review: bool = False


@dataclass(frozen=True)
class Expected:
    """The payroll the rules must produce: households meeting them, those paid, the total and
    the exclusions by reason."""

    eligible: int
    on_payroll: int
    total_amount_minor: int
    exclusions: dict[str, int] = field(default_factory=dict)

    def differences(
        self, eligible: int, on_payroll: int, total: int, exclusions: Mapping[str, int]
    ) -> list[str]:
        """What a generated payroll or a simulation got otherwise ([] when it matches). Lines
        and total must be exactly these; other households of the registry may meet the rules
        only if they are left out (an earlier run's beyond this population, whose provider is
        suspended), never paid."""
        others = self.others(exclusions)
        checks = [
            ("on payroll", self.on_payroll, on_payroll),
            ("total", self.total_amount_minor, total),
            ("eligible", self.eligible + sum(others.values()), eligible),
        ]
        problems = [
            f"{name}: expected {want}, got {got}" for name, want, got in checks if want != got
        ]
        if any(count < 0 for count in others.values()):
            problems.append(f"exclusions: expected {self.exclusions}, got {_nonzero(exclusions)}")
        return problems

    def others(self, exclusions: Mapping[str, int]) -> dict[str, int]:
        """Exclusions beyond this population's, by reason (negative: fewer than expected)."""
        reasons = set(self.exclusions) | set(exclusions)
        counts = {r: exclusions.get(r, 0) - self.exclusions.get(r, 0) for r in sorted(reasons)}
        return _nonzero(counts)


def _nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def expected_payroll(
    households: Sequence[GeneratedHousehold], standing: Mapping[str, Standing], on: date
) -> Expected:
    """Evaluates the rules and the formula on the generated households, by household code.
    A household meeting the rules is left out when it is suspended or exited, or under
    review (by its status or an open duplicate review: the first reasons payroll applies);
    every household has a payable preference."""
    rules = programme_rules()
    eligible = paid = total = 0
    exclusions: Counter[str] = Counter()
    for generated in households:
        household = _domain_household(generated)
        if not evaluate(rules.eligibility, household, on):
            continue
        eligible += 1
        state = standing.get(generated.code, Standing())
        if state.status in ("suspended", "exited"):
            exclusions["not_active"] += 1
        elif state.status == "under_review" or state.under_review:
            exclusions["under_review"] += 1
        else:
            paid += 1
            total += rules.formula.amount(household, on)
    return Expected(eligible, paid, total, dict(exclusions))


def programme_rules() -> ProgrammeRules:
    return parse_programme_rules(
        ELIGIBILITY, FORMULA, BUDGET_PRIORITY, attribute_schema(eligibility_attributes())
    )


def _domain_household(generated: GeneratedHousehold) -> Household:
    body = generated.body
    members = tuple(
        Member(date.fromisoformat(m["date_of_birth"]), m["sex"], bool(m.get("disability")))
        for m in body["members"]
    )
    return Household(
        household_number=generated.code,
        location_code=body["location_code"],
        status="active",
        members=members,
        attributes=body.get("eligibility_attributes", {}),
    )


@dataclass(frozen=True)
class Schedule:
    """A monthly programme whose first cycle is due today: it starts on the first of this
    month and pays from today (the 28th at the latest, the last payment day a month always
    has) for a window that stays open well past the demo."""

    start_date: date
    payment_day: int
    window_days: int = PAYMENT_WINDOW_DAYS

    @classmethod
    def due_on(cls, today: date) -> Schedule:
        return cls(today.replace(day=1), min(today.day, 28))

    def frequency(self) -> dict[str, Any]:
        return {
            "unit": "monthly",
            "payment_day": self.payment_day,
            "payment_window_days": self.window_days,
        }


def run_codes(seed: int, started: str, label: str = "DEMO") -> tuple[str, str]:
    """Unique per run (`started` is the UTC start as yymmddHHMMSS): the provider's code and
    the programme's. `label` tells the demo's runs from the benchmark's."""
    return f"{label}-PSP-S{seed}-{started}", f"{label}-S{seed}-{started}"


def earlier_run_prefixes(label: str = "DEMO") -> tuple[str, str]:
    """What the provider's and the programme's codes of every run with `label` start with."""
    return f"{label}-PSP-", f"{label}-S"


@dataclass(frozen=True)
class Reconciliation:
    """Counts and amounts by status of one payroll, as disbursement reports them."""

    payroll_count: int
    payroll_amount_minor: int
    by_status: dict[str, tuple[int, int]]  # status -> (count, amount in minor units)

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Reconciliation:
        totals = answer["payroll_totals"]
        return cls(
            totals["count"],
            totals["amount_minor"],
            {s: (answer[s]["count"], answer[s]["amount_minor"]) for s in STATUSES},
        )

    @property
    def open_count(self) -> int:
        return self.by_status["pending"][0] + self.by_status["sent"][0]

    def problems(self, line_count: int, total_amount_minor: int) -> list[str]:
        """Why the reconciliation does not hold against the payroll payroll generated:
        [] when settled + failed + expired + reversed + pending + sent = the payroll, in count
        and in amount, and disbursement's payroll is that payroll."""
        count = sum(c for c, _ in self.by_status.values())
        amount = sum(a for _, a in self.by_status.values())
        checks = [
            ("payments received", (self.payroll_count, self.payroll_amount_minor)),
            ("sum of the statuses", (count, amount)),
        ]
        want = (line_count, total_amount_minor)
        return [
            f"{name}: {got[0]} payments, {got[1]} minor units; the payroll has "
            f"{want[0]} lines, {want[1]} minor units"
            for name, got in checks
            if got != want
        ]


def failures_by_reason(export_csv: str) -> dict[str, tuple[int, int]]:
    """reason code -> (count, amount) of the failed and expired payments in a reconciliation
    export (GET /reconciliation/{payroll_id}/export.csv)."""
    found: dict[str, tuple[int, int]] = {}
    for row in csv.DictReader(io.StringIO(export_csv)):
        if row["status"] in ("failed", "expired"):
            count, amount = found.get(row["reason_code"] or "?", (0, 0))
            found[row["reason_code"] or "?"] = (count + 1, amount + int(row["amount_minor"]))
    return dict(sorted(found.items(), key=lambda item: (-item[1][0], item[0])))


def money(minor: int, currency: str = CURRENCY) -> str:
    """12345678 -> 'KES 123,456.78' (two decimals, as KES has)."""
    sign = "-" if minor < 0 else ""
    major, cents = divmod(abs(minor), 100)
    return f"{sign}{currency} {major:,}.{cents:02d}"
