"""The pure rules, on hand-computed cases."""

from datetime import date, timedelta
from typing import Any

import pytest

from amana_contracts.demographics import age_on
from payroll.domain import (
    AllOf,
    Candidate,
    Comparison,
    Frequency,
    Household,
    InvalidRules,
    LocationDelta,
    Member,
    MemberFilter,
    PaymentState,
    PayrollStatus,
    ProviderState,
    Refused,
    Schedule,
    SimulatedGroup,
    apply_budget,
    born_by,
    check_budget,
    check_checker,
    check_payroll_transition,
    check_programme_transition,
    compare_versions,
    evaluate,
    exclusion_reason,
    lines_per_chunk,
    parse_formula,
    parse_priority,
    parse_programme_rules,
    parse_rule,
    roll_up_locations,
)

from .conftest import ATTRIBUTES
from .factories import FORMULA

ON = date(2026, 7, 1)


def paths(error: InvalidRules) -> list[str]:
    return [e.path for e in error.errors]


def rule_errors(raw: object) -> list[str]:
    with pytest.raises(InvalidRules) as raised:
        parse_rule(raw, ATTRIBUTES, "eligibility")
    return paths(raised.value)


# --- ages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("years", [1, 5, 18, 35, 60])
def test_born_by_agrees_with_age_on_every_day_around_leap_years(years: int) -> None:
    days = [date(2023, 1, 1) + timedelta(days=n) for n in range(0, 3 * 366, 7)]
    days += [date(y, m, d) for y in (2023, 2024, 2025, 2028) for m, d in ((2, 28), (3, 1))]
    days.append(date(2024, 2, 29))
    births = [date(2024 - years, 2, 25) + timedelta(days=n) for n in range(8)]
    births += [date(2024 - years, 1, 1) + timedelta(days=n) for n in range(0, 366, 5)]
    for on in days:
        for born in births:
            assert (age_on(born, on) >= years) == (born <= born_by(on, years)), (born, on)


def test_someone_born_on_29_february_is_a_year_older_on_1_march() -> None:
    assert born_by(date(2026, 2, 28), 18) == date(2008, 2, 28)
    assert not date(2008, 2, 29) <= born_by(date(2026, 2, 28), 18)
    assert date(2008, 2, 29) <= born_by(date(2026, 3, 1), 18)
    assert born_by(date(2024, 2, 29), 1) == date(2023, 2, 28)


# --- households of the hand-computed cases --------------------------------------------------

AMINA = Household(
    household_number="H0000000018",
    location_code="KE-047-0101",
    status="active",
    members=(
        Member(date(1980, 5, 10), "female"),  # 46 on ON: 35-59
        Member(date(2020, 1, 15), "male"),  # 6: 5-17
        Member(date(2022, 9, 30), "female", disability=True),  # 3: 0-4
    ),
    attributes={"pmt_score": 25.5, "housing": "mud", "orphan": False},
)
BARAKA = Household(
    household_number="H0000000026",
    location_code="KE-0470-01",  # not below KE-047: a prefix counts only at a separator
    status="active",
    members=(Member(date(1950, 7, 2), "male"),),  # 75 on ON... born 2 July: 75 on 1 July 2026
    attributes={"pmt_score": 12},
)
CHEPTOO = Household(
    household_number="H0000000034",
    location_code="KE-047.02",
    status="under_review",
    members=(
        Member(date(1990, 1, 1), "female"),
        *(Member(date(2012 + n, 3, 3), "male", disability=n < 2) for n in range(5)),
    ),
    attributes={},
)

TARGETING = {
    "all": [
        {"field": "location", "op": "within", "value": "KE-047"},
        {"field": "members", "where": {"age_band": ["0-4", "5-17"]}, "op": ">=", "value": 1},
        {"not": {"field": "attributes.pmt_score", "op": ">=", "value": 30}},
    ]
}


def test_a_household_meets_the_rules_it_was_computed_to_meet() -> None:
    rule = parse_rule(TARGETING, ATTRIBUTES)

    assert evaluate(rule, AMINA, ON) is True  # within KE-047, 2 children, score 25.5 < 30
    assert evaluate(rule, BARAKA, ON) is False  # KE-0470-01 is not within KE-047
    # no pmt_score: the comparison is false, so its `not` is true
    assert evaluate(rule, CHEPTOO, ON) is True


def test_comparisons_on_each_field() -> None:
    def holds(raw: object, household: Household = AMINA) -> bool:
        return evaluate(parse_rule(raw, ATTRIBUTES), household, ON)

    assert holds({"field": "household_size", "op": "=", "value": 3})
    assert holds({"field": "household_size", "op": "in", "value": [1, 3]})
    assert holds({"field": "status", "op": "not_in", "value": ["suspended", "exited"]})
    assert holds({"field": "status", "op": "=", "value": "under_review"}, CHEPTOO)
    assert holds({"field": "location", "op": "in", "value": ["KE-047-0101"]})
    assert not holds({"field": "location", "op": "=", "value": "KE-047"})
    assert holds({"field": "location", "op": "within", "value": ["KE-001", "KE"]})
    assert holds({"field": "attributes.housing", "op": "=", "value": "mud"})
    assert holds({"field": "attributes.orphan", "op": "!=", "value": True})
    assert holds({"field": "attributes.pmt_score", "op": "present", "value": True})
    assert holds({"field": "attributes.pmt_score", "op": "present", "value": False}, CHEPTOO)
    assert not holds({"field": "attributes.pmt_score", "op": "<", "value": 100}, CHEPTOO)
    assert holds({"field": "attributes.pmt_score", "op": "<=", "value": 12}, BARAKA)
    # members by sex and disability, and by age in years
    assert holds({"field": "members", "where": {"sex": "female"}, "op": "=", "value": 2})
    assert holds(
        {"field": "members", "where": {"disability": True}, "op": "=", "value": 2}, CHEPTOO
    )
    assert holds(
        {"field": "members", "where": {"min_age": 6, "max_age": 17}, "op": "=", "value": 1}
    )
    assert holds({"field": "members", "where": {"age_band": "60+"}, "op": "=", "value": 1}, BARAKA)
    assert holds({"field": "members", "op": ">", "value": 5}, CHEPTOO)
    assert holds({"any": [{"field": "household_size", "op": "<", "value": 2}, TARGETING]}, BARAKA)
    assert holds({"all": []})


def test_ages_are_counted_on_the_cycle_date() -> None:
    turns_eighteen = Household("H1", "KE", "active", (Member(date(2008, 7, 2), "male"),))
    adults = parse_rule(
        {"field": "members", "where": {"min_age": 18}, "op": ">=", "value": 1}, ATTRIBUTES
    )

    assert evaluate(adults, turns_eighteen, date(2026, 7, 1)) is False
    assert evaluate(adults, turns_eighteen, date(2026, 7, 2)) is True


# --- rule errors name their path ------------------------------------------------------------


def test_an_unknown_field_is_refused_at_its_path() -> None:
    assert rule_errors({"all": [{"field": "income", "op": "<", "value": 3}]}) == [
        "eligibility.all.0.field"
    ]
    assert rule_errors({"all": [{"field": "attributes.income", "op": "<", "value": 3}]}) == [
        "eligibility.all.0.field"
    ]


def test_wrong_types_are_refused_at_their_path() -> None:
    tree = {
        "any": [
            {"field": "household_size", "op": ">=", "value": "3"},
            {"field": "household_size", "op": ">=", "value": True},
            {"field": "attributes.pmt_score", "op": "<", "value": "low"},
            {"field": "attributes.orphan", "op": "<", "value": True},
            {"field": "status", "op": "in", "value": "active"},
            {"field": "location", "op": "within", "value": ["KE-047", "ke 047"]},
            {"not": {"field": "members", "where": {"age_band": ["0-3"]}, "op": ">", "value": 0}},
        ]
    }

    assert rule_errors(tree) == [
        "eligibility.any.0.value",
        "eligibility.any.1.value",
        "eligibility.any.2.value",
        "eligibility.any.3.op",
        "eligibility.any.4.value",
        "eligibility.any.5.value.1",
        "eligibility.any.6.not.where.age_band.0",
    ]


def test_objects_and_lists_where_a_value_belongs_are_refused_at_their_path() -> None:
    tree = {
        "any": [
            {"field": "members", "where": {"sex": [{}], "age_band": [[]]}, "op": ">", "value": 0},
            {"field": "status", "op": "in", "value": [{"a": 1}, ["active"]]},
        ]
    }

    assert rule_errors(tree) == [
        "eligibility.any.0.where.age_band.0",
        "eligibility.any.0.where.sex.0",
        "eligibility.any.1.value.0",
        "eligibility.any.1.value.1",
    ]


def test_malformed_trees_are_refused() -> None:
    assert rule_errors([]) == ["eligibility"]
    assert rule_errors({"any": []}) == ["eligibility.any"]
    assert rule_errors({"all": {"field": "status"}}) == ["eligibility.all"]
    assert rule_errors({"field": "status", "op": "=", "value": "active", "extra": 1}) == [
        "eligibility.extra"
    ]
    assert rule_errors({"field": "status", "op": "="}) == ["eligibility.value"]
    assert rule_errors({"field": "status", "op": "=", "value": "ok", "where": {}}) == [
        "eligibility.where",
        "eligibility.value",
    ]
    deep: dict[str, Any] = {"field": "status", "op": "=", "value": "active"}
    for _ in range(20):
        deep = {"not": deep}
    assert any("deeper" in e for e in _messages(deep))
    wide = {"all": [{"field": "household_size", "op": ">", "value": 1}] * 250}
    assert any("nodes" in e for e in _messages(wide))


def _messages(raw: object) -> list[str]:
    with pytest.raises(InvalidRules) as raised:
        parse_rule(raw, ATTRIBUTES)
    return [e.message for e in raised.value.errors]


def test_text_values_refuse_control_characters() -> None:
    assert rule_errors({"field": "attributes.housing", "op": "=", "value": "mud\u0000"}) == [
        "eligibility.value"
    ]


# --- formula ----------------------------------------------------------------------------------


def test_the_formula_adds_top_ups_up_to_their_count_and_caps_the_total() -> None:
    formula = parse_formula(FORMULA)

    # 2 children (+100,000), 1 disabled member (+100,000)
    assert formula.amount(AMINA, ON) == 500_000
    # no children, no disability
    assert formula.amount(BARAKA, ON) == 300_000
    # 5 children born 2012-2016 (3 counted: +150,000), 2 disabled (+200,000): 650,000, capped
    assert formula.amount(CHEPTOO, ON) == 600_000
    assert parse_formula({"base_amount_minor": 1}).amount(CHEPTOO, ON) == 1


def test_bad_formulas_are_refused_at_their_path() -> None:
    def errors(raw: object) -> list[str]:
        with pytest.raises(InvalidRules) as raised:
            parse_formula(raw, "formula")
        return paths(raised.value)

    assert errors({"base_amount_minor": -5}) == ["formula.base_amount_minor"]
    assert errors({"base_amount_minor": 10.5}) == ["formula.base_amount_minor"]
    assert errors({"base_amount_minor": 100, "cap_minor": 50}) == ["formula.cap_minor"]
    assert errors({"base_amount_minor": 100, "bonus": 1}) == ["formula.bonus"]
    assert errors(
        {"base_amount_minor": 100, "top_ups": [{"amount_minor": -1, "where": {"sex": "x"}}]}
    ) == [
        "formula.top_ups.0.where.sex",
        "formula.top_ups.0.amount_minor",
        "formula.top_ups.0.max_count",
    ]


def test_every_part_is_checked_and_reported_together() -> None:
    with pytest.raises(InvalidRules) as raised:
        parse_programme_rules(
            {"field": "nope", "op": "=", "value": 1},
            {"base_amount_minor": 0},
            [{"by": "attributes.unknown"}],
            ATTRIBUTES,
        )
    assert paths(raised.value) == [
        "eligibility.field",
        "formula.base_amount_minor",
        "budget_priority.0.by",
    ]


# --- budget -------------------------------------------------------------------------------


def candidate(number: str, score: float | None, amount: int, excluded: Any = None) -> Candidate:
    attributes = {} if score is None else {"pmt_score": score}
    household = Household(number, "KE", "active", (), attributes)
    return Candidate(household, amount, excluded)


def test_over_budget_cuts_in_priority_order_then_household_number() -> None:
    priority = parse_priority([{"by": "attributes.pmt_score", "order": "asc"}], ATTRIBUTES)
    candidates = [
        candidate("H4", 30.0, 100),
        candidate("H1", 10.0, 100),
        candidate("H3", 20.0, 100),
        candidate("H2", 20.0, 100),
        candidate("H5", None, 100),  # no score: last
        candidate("H0", 5.0, 100, excluded="under_review"),  # takes no budget
    ]

    decided = apply_budget(candidates, priority, budget_minor=250)

    assert [(c.household.household_number, c.excluded) for c in decided] == [
        ("H0", "under_review"),
        ("H1", None),
        ("H2", None),
        ("H3", "over_budget"),  # 300 > 250: it and everyone after
        ("H4", "over_budget"),
        ("H5", "over_budget"),
    ]


def test_descending_priority_and_the_budget_check() -> None:
    priority = parse_priority([{"by": "household_size", "order": "desc"}], ATTRIBUTES)
    big = Household("H9", "KE", "active", (Member(date(2000, 1, 1), "male"),) * 4)
    small = Household("H1", "KE", "active", (Member(date(2000, 1, 1), "male"),))
    decided = apply_budget([Candidate(small, 10, None), Candidate(big, 10, None)], priority, 10)

    assert [(c.household.household_number, c.excluded) for c in decided] == [
        ("H9", None),
        ("H1", "over_budget"),
    ]
    check_budget(100, 100)
    with pytest.raises(Refused):
        check_budget(101, 100)


# --- exclusions ---------------------------------------------------------------------------

PAYABLE = PaymentState("active", False, True, (), True, "psp", "mobile_money", None)
PSP = ProviderState("active", ("KES",), ("mobile_money", "cash_pay_point"), frozenset({"pp1"}))


@pytest.mark.parametrize(
    ("state", "provider", "reason"),
    [
        (PAYABLE, PSP, None),
        (
            PaymentState("exited", False, True, (), True, "psp", "mobile_money", None),
            PSP,
            "not_active",
        ),
        (PaymentState("suspended", True, False, (), True, None, None, None), PSP, "not_active"),
        (
            PaymentState("under_review", False, True, (), True, "psp", "mobile_money", None),
            PSP,
            "under_review",
        ),
        (
            PaymentState("active", True, True, (), True, "psp", "mobile_money", None),
            PSP,
            "under_review",
        ),
        (
            PAYABLE,
            ProviderState("suspended", ("KES",), ("mobile_money",), frozenset()),
            "provider_suspended",
        ),
        (
            PaymentState(
                "active", False, False, ("provider_suspended",), True, "psp", "mobile_money", None
            ),
            PSP,
            "provider_suspended",
        ),
        (
            PaymentState(
                "active", False, False, ("account_missing",), True, "psp", "mobile_money", None
            ),
            PSP,
            "no_payable_preference",
        ),
        (
            PaymentState("active", False, True, (), False, "psp", "mobile_money", None),
            PSP,
            "no_payable_preference",
        ),
        (
            PaymentState("active", False, True, (), True, None, None, None),
            PSP,
            "no_payable_preference",
        ),
        (PAYABLE, None, "no_payable_preference"),
        (
            PaymentState("active", False, True, (), True, "psp", "voucher", None),
            PSP,
            "no_payable_preference",
        ),
        (
            PaymentState("active", False, True, (), True, "psp", "cash_pay_point", "pp2"),
            PSP,
            "no_payable_preference",
        ),
        (PaymentState("active", False, True, (), True, "psp", "cash_pay_point", "pp1"), PSP, None),
        (
            PAYABLE,
            ProviderState("active", ("UGX",), ("mobile_money",), frozenset()),
            "provider_currency",
        ),
    ],
)
def test_the_first_reason_that_applies_leaves_a_household_out(
    state: PaymentState, provider: ProviderState | None, reason: str | None
) -> None:
    assert exclusion_reason(state, provider, "KES") == reason


# --- cycles -------------------------------------------------------------------------------


def test_monthly_cycles_from_the_first_payment_date_on_or_after_the_start() -> None:
    schedule = Schedule(date(2026, 1, 15), date(2026, 5, 31), Frequency("monthly", 10, 14))

    first = schedule.cycle(1)
    assert first is not None
    assert (first.period_start, first.period_end) == (date(2026, 2, 1), date(2026, 2, 28))
    assert (first.payment_date, first.window_end) == (date(2026, 2, 10), date(2026, 2, 23))
    assert first.generate_on(5) == date(2026, 2, 5)
    assert [c.payment_date for c in schedule.cycles_until(date(2030, 1, 1))] == [
        date(2026, 2, 10),
        date(2026, 3, 10),
        date(2026, 4, 10),
        date(2026, 5, 10),
    ]
    assert schedule.cycle(5) is None  # 10 June is after the end date
    assert schedule.cycle(0) is None


def test_quarterly_and_every_n_months() -> None:
    quarterly = Schedule(date(2026, 1, 1), None, Frequency("quarterly", 1, 30))
    assert [c.period_start for c in quarterly.cycles_until(date(2026, 12, 31))] == [
        date(2026, 1, 1),
        date(2026, 4, 1),
        date(2026, 7, 1),
        date(2026, 10, 1),
    ]
    last = quarterly.cycle(4)
    assert last is not None and last.period_end == date(2026, 12, 31)
    every_two = Schedule(date(2026, 11, 1), None, Frequency("every_n_months", 28, 3, 2))
    assert [c.payment_date for c in every_two.cycles_until(date(2027, 5, 1))] == [
        date(2026, 11, 28),
        date(2027, 1, 28),
        date(2027, 3, 28),
    ]


def test_a_programme_without_any_payment_date_is_refused() -> None:
    with pytest.raises(Refused):
        Schedule(date(2026, 1, 11), date(2026, 2, 9), Frequency("monthly", 10, 5)).check()
    with pytest.raises(Refused):
        Schedule(date(2026, 1, 1), date(2025, 1, 1), Frequency("monthly", 10, 5)).check()


# --- states -------------------------------------------------------------------------------


def test_programme_and_payroll_states() -> None:
    check_programme_transition("draft", "active")
    check_programme_transition("suspended", "active")
    for current, target in (("closed", "active"), ("draft", "suspended"), ("active", "active")):
        with pytest.raises(Refused):
            check_programme_transition(current, target)  # type: ignore[arg-type]
    check_payroll_transition(PayrollStatus.GENERATING, PayrollStatus.PENDING_APPROVAL)
    check_payroll_transition(PayrollStatus.FAILED, PayrollStatus.GENERATING)
    with pytest.raises(Refused) as twice:
        check_payroll_transition(PayrollStatus.APPROVED, PayrollStatus.APPROVED)
    assert twice.value.slug == "payroll-approved"
    with pytest.raises(Refused):
        check_payroll_transition(PayrollStatus.GENERATING, PayrollStatus.APPROVED)


def test_maker_checker() -> None:
    check_checker("approver-1", ["system:scheduler", None])
    check_checker("approver-1", ["maker-1", "maker-2"])
    for maker in ("maker-1", "maker-2"):
        with pytest.raises(Refused):
            check_checker(maker, ["maker-1", "maker-2"])


# --- chunks and locations ---------------------------------------------------------------------


def test_chunks_hold_as_many_lines_as_the_widest_line_allows() -> None:
    assert lines_per_chunk(650, 1000, 786_000) == 1000
    assert lines_per_chunk(1_000, 1000, 786_000) == 785  # 785 lines + 784 commas fit
    assert 785 * 1_000 + 784 <= 786_000 < 786 * 1_000 + 785
    assert lines_per_chunk(100, 1000, 100) == 1
    with pytest.raises(ValueError):
        lines_per_chunk(101, 1000, 100)


def test_locations_roll_up_one_level() -> None:
    assert roll_up_locations(
        {
            "KE-047-0101": (3, 2, 200),
            "KE-047-0102": (1, 1, 100),
            "KE-001": (5, 5, 500),
            "UG": (1, 0, 0),
        }
    ) == {"KE-047": (4, 3, 300), "KE": (5, 5, 500), "UG": (1, 0, 0)}


def test_member_filter_defaults_match_everyone() -> None:
    assert MemberFilter().count(CHEPTOO, ON) == 6
    assert isinstance(parse_rule({"all": []}, ATTRIBUTES), AllOf)
    comparison = parse_rule({"field": "members", "op": ">", "value": 0}, ATTRIBUTES)
    assert isinstance(comparison, Comparison) and comparison.where == MemberFilter()


def test_comparing_two_versions_counts_who_each_pays_and_the_change() -> None:
    groups = [
        # paid by both
        SimulatedGroup("KE-1", None, None, True, True, 3, 300, 360),
        # paid now only (newly included), not eligible before
        SimulatedGroup("KE-1", "not_eligible", None, False, True, 2, 0, 200),
        # paid before only (newly excluded): over the budget now
        SimulatedGroup("KE-2", None, "over_budget", True, True, 1, 100, 100),
        # left out by both, for a reason that is not the rules'
        SimulatedGroup("KE-2", "under_review", "under_review", True, True, 4, 400, 400),
    ]

    comparison = compare_versions(groups)

    assert (comparison.newly_included, comparison.newly_excluded) == (2, 1)
    assert comparison.cost_delta_minor == (360 + 200) - (300 + 100)
    assert (comparison.current.eligible, comparison.candidate.eligible) == (8, 10)
    assert comparison.candidate.exclusions["over_budget"] == 1
    assert comparison.current.exclusions["under_review"] == 4
    assert comparison.locations["KE-1"] == LocationDelta("KE-1", 5, 5, 560, 3, 300)
    assert comparison.locations["KE-2"] == LocationDelta("KE-2", 5, 0, 0, 1, 100)
