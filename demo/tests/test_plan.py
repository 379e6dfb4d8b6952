"""The demo's expectations, checked on hand-computed cases: what the rules and the formula give,
when a reconciliation holds, failures by reason, the schedule that makes cycle 1 due today."""

from datetime import date
from typing import Any
from uuid import UUID

from demo import plan
from registry.generate import GeneratedHousehold


def person(
    sex: str = "female", disability: bool = False, born: str = "1990-05-01"
) -> dict[str, Any]:
    return {"sex": sex, "date_of_birth": born, "disability": disability}


def household(code: str, members: int, disabled: int = 0, **attributes: Any) -> GeneratedHousehold:
    people = [person(disability=n < disabled) for n in range(members)]
    body = {"location_code": "KE-047-0101", "members": people, "eligibility_attributes": attributes}
    return GeneratedHousehold(code, body)


ON = date(2026, 11, 1)


def test_the_rules_and_the_formula_on_hand_computed_households() -> None:
    households = [
        household("poor", 2, pmt_score=20.0),  # 2,500 + 2 x 300 = 3,100
        household("hungry", 5, pmt_score=50.0, food_insecure=True),  # 2,500 + 5 x 300 = 4,000
        household("capped", 7, disabled=2, pmt_score=10.0),  # 2,500 + 1,800 + 1,000 > 5,000
        household("carer", 1, disabled=1, pmt_score=90.0),  # 2,500 + 300 + 500 = 3,300
        household("small-hungry", 4, pmt_score=50.0, food_insecure=True),  # not eligible
        household("better-off", 3, pmt_score=80.0),  # not eligible
        household("no-score", 3),  # a rule on a missing attribute is false
    ]
    expected = plan.expected_payroll(households, {}, ON)
    assert expected == plan.Expected(4, 4, 310_000 + 400_000 + 500_000 + 330_000, {})


def test_households_not_active_or_under_review_are_eligible_but_left_out() -> None:
    households = [household("a", 2, pmt_score=5.0), household("b", 2, pmt_score=5.0)]
    standing = {"a": plan.Standing("suspended"), "b": plan.Standing(under_review=True)}
    expected = plan.expected_payroll(households, standing, ON)
    assert expected == plan.Expected(2, 0, 0, {"not_active": 1, "under_review": 1})
    assert (
        expected.differences(2, 0, 0, {"not_active": 1, "under_review": 1, "over_budget": 0}) == []
    )
    flagged = {"a": plan.Standing("under_review", True), "b": plan.Standing("exited")}
    assert plan.expected_payroll(households, flagged, ON).exclusions == {
        "under_review": 1,
        "not_active": 1,
    }
    assert expected.differences(2, 1, 310_000, {"not_active": 1}) == [
        "on payroll: expected 0, got 1",
        "total: expected 0, got 310000",
        "eligible: expected 1, got 2",
        "exclusions: expected {'not_active': 1, 'under_review': 1}, got {'not_active': 1}",
    ]


def test_other_households_may_meet_the_rules_only_to_be_left_out() -> None:
    expected = plan.Expected(3, 3, 900_000, {})
    earlier_run = {"provider_suspended": 2}
    assert expected.differences(5, 3, 900_000, earlier_run) == []
    assert expected.others(earlier_run) == {"provider_suspended": 2}
    assert expected.differences(6, 4, 1_200_000, earlier_run) == [
        "on payroll: expected 3, got 4",
        "total: expected 900000, got 1200000",
        "eligible: expected 5, got 6",
    ]


def answer(**counts: tuple[int, int]) -> dict[str, Any]:
    by_status = {s: counts.get(s, (0, 0)) for s in plan.STATUSES}
    total = (sum(c for c, _ in by_status.values()), sum(a for _, a in by_status.values()))
    return {
        "payroll_totals": {"count": total[0], "amount_minor": total[1]},
        **{s: {"count": c, "amount_minor": a} for s, (c, a) in by_status.items()},
    }


def test_the_reconciliation_holds_when_the_statuses_add_up_to_the_payroll() -> None:
    done = plan.Reconciliation.from_answer(answer(settled=(9, 900), failed=(1, 100)))
    assert done.problems(10, 1_000) == []
    assert done.open_count == 0
    running = plan.Reconciliation.from_answer(answer(settled=(4, 400), sent=(6, 600)))
    assert running.problems(10, 1_000) == [] and running.open_count == 6


def test_a_reconciliation_short_of_the_payroll_is_a_problem() -> None:
    short = plan.Reconciliation.from_answer(answer(settled=(9, 900)))
    assert short.problems(10, 1_000) == [
        "payments received: 9 payments, 900 minor units; the payroll has 10 lines, 1000 "
        "minor units",
        "sum of the statuses: 9 payments, 900 minor units; the payroll has 10 lines, 1000 "
        "minor units",
    ]
    skewed = answer(settled=(10, 1_000))
    skewed["settled"]["amount_minor"] = 990  # the statuses disagree with the totals
    assert plan.Reconciliation.from_answer(skewed).problems(10, 1_000) == [
        "sum of the statuses: 10 payments, 990 minor units; the payroll has 10 lines, 1000 "
        "minor units"
    ]


def test_failures_by_reason_from_the_export() -> None:
    export = (
        "payment_number,household_number,provider_id,mechanism,currency,amount_minor,fee_minor,"
        "status,reason_code,provider_reference,status_changed_at\r\n"
        "P1,H1,p,mobile_money,KES,100,,settled,,R1,t\r\n"
        "P2,H2,p,mobile_money,KES,200,,failed,AC01,R2,t\r\n"
        "P3,H3,p,mobile_money,KES,300,,failed,AC01,R3,t\r\n"
        "P4,H4,p,mobile_money,KES,400,,expired,EXPD,,t\r\n"
        "P5,H5,p,mobile_money,KES,500,,failed,MD07,R5,t\r\n"
    )
    assert plan.failures_by_reason(export) == {
        "AC01": (2, 500),
        "EXPD": (1, 400),
        "MD07": (1, 500),
    }


def test_cycle_one_is_due_on_the_day_of_the_run() -> None:
    assert plan.Schedule.due_on(date(2026, 2, 10)) == plan.Schedule(date(2026, 2, 1), 10)
    late = plan.Schedule.due_on(date(2026, 11, 30))  # paid from the 28th, the window still open
    assert late == plan.Schedule(date(2026, 11, 1), 28)
    assert late.frequency() == {"unit": "monthly", "payment_day": 28, "payment_window_days": 10}


def test_the_population_is_the_same_on_every_run_and_paid_by_mobile_money() -> None:
    first, again = plan.population(40, 7), plan.population(40, 7)
    assert [h.body for h in first] == [h.body for h in again]
    assert {h.body["payment_preference"]["mechanism"] for h in first} == {"mobile_money"}
    assert all("payment_preference" not in h.body for h in plan.without_preference(first))
    assert plan.run_codes(7, "261129231251") == ("DEMO-PSP-S7-261129231251", "DEMO-S7-261129231251")


def test_the_benchmark_imports_the_preference_for_its_provider_and_retires_only_its_runs() -> None:
    provider = UUID("01a229dd-cef2-7e7f-94a7-ac3b1f89622f")
    paid = plan.paid_through(plan.population(5, 7), provider)
    assert {h.body["payment_preference"]["provider_id"] for h in paid} == {str(provider)}
    assert all(h.body["payment_preference"]["account"] for h in paid)
    provider_code, programme_code = plan.run_codes(7, "261130003015", "E2E")
    assert (provider_code, programme_code) == ("E2E-PSP-S7-261130003015", "E2E-S7-261130003015")
    provider_prefix, programme_prefix = plan.earlier_run_prefixes("E2E")
    assert provider_code.startswith(provider_prefix)
    assert programme_code.startswith(programme_prefix)
    assert not "DEMO-S7-261129231251".startswith(programme_prefix)
    assert not programme_code.startswith(plan.earlier_run_prefixes()[1])


def test_money_in_major_units() -> None:
    assert plan.money(190_820_000) == "KES 1,908,200.00"
    assert plan.money(5) == "KES 0.05"
