"""Registry rules on hand-computed cases: statuses, duplicate review, payment preference
checks and payability, member roles, change history."""

from typing import Any
from uuid import UUID

import pytest

from amana_contracts.registry import HouseholdStatus
from registry.domain import (
    PayPointView,
    PreferenceTerms,
    ProviderView,
    Roles,
    RuleBroken,
    check_operator_transition,
    field_changes,
    flatten,
    payability,
    preference_shape_problems,
    provider_problems,
    roles_after_change,
    roles_after_removal,
    status_after_review,
)

PROVIDER = UUID("01930000-0000-7000-8000-0000000000a1")
POINT = UUID("01930000-0000-7000-8000-0000000000b1")
OTHER_POINT = UUID("01930000-0000-7000-8000-0000000000b2")
HOME = "KE-047-0101.01.001"


def provider(**changes: object) -> ProviderView:
    fields: dict[str, object] = {
        "provider_id": PROVIDER,
        "active": True,
        "mechanisms": frozenset({"mobile_money", "cash_pay_point"}),
        "currencies": frozenset({"KES"}),
        "service_areas": ("KE-047",),
        "pay_points": {
            POINT: PayPointView(POINT, True, ("KE-047-0101",)),
            OTHER_POINT: PayPointView(OTHER_POINT, True, ("KE-047-0102",)),
        },
    }
    fields.update(changes)
    return ProviderView(**fields)  # type: ignore[arg-type]


def mobile(**changes: object) -> PreferenceTerms:
    fields: dict[str, object] = {
        "provider_id": PROVIDER,
        "mechanism": "mobile_money",
        "currency": "KES",
        "pay_point_id": None,
        "account_kind": "msisdn",
    }
    fields.update(changes)
    return PreferenceTerms(**fields)  # type: ignore[arg-type]


def cash(point: UUID = POINT) -> PreferenceTerms:
    return mobile(mechanism="cash_pay_point", pay_point_id=point, account_kind=None)


# --- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("active", "suspended"),
        ("active", "exited"),
        ("suspended", "active"),
        ("suspended", "exited"),
        ("under_review", "suspended"),
        ("under_review", "exited"),
    ],
)
def test_operator_transitions_allowed(current: str, target: str) -> None:
    check_operator_transition(current, target, review_open=False)


@pytest.mark.parametrize(
    ("current", "target", "review_open", "code"),
    [
        ("active", "active", False, "status-unchanged"),
        ("exited", "active", False, "status-transition"),
        ("exited", "suspended", False, "status-transition"),
        ("suspended", "active", True, "duplicate-review-open"),
        ("under_review", "active", True, "duplicate-review-open"),
    ],
)
def test_operator_transitions_refused(
    current: str, target: str, review_open: bool, code: str
) -> None:
    with pytest.raises(RuleBroken) as refused:
        check_operator_transition(current, target, review_open)
    assert (refused.value.status, refused.value.code, refused.value.field) == (409, code, "status")


@pytest.mark.parametrize(
    ("current", "review_open", "after"),
    [
        ("active", True, "under_review"),
        ("under_review", False, "active"),
        ("suspended", True, "suspended"),
        ("suspended", False, "suspended"),
        ("exited", True, "exited"),
        ("active", False, "active"),
    ],
)
def test_the_duplicate_review_moves_active_and_under_review_only(
    current: HouseholdStatus, review_open: bool, after: str
) -> None:
    assert status_after_review(current, review_open) == after


# --- payment preference ----------------------------------------------------------------------


def test_a_preference_the_provider_can_pay_has_no_problem() -> None:
    assert provider_problems(mobile(), provider(), HOME) == []
    assert provider_problems(cash(), provider(), HOME) == []


@pytest.mark.parametrize(
    ("terms", "view", "reasons"),
    [
        (mobile(), None, ["provider_unknown"]),
        (mobile(), provider(active=False), ["provider_suspended"]),
        (
            mobile(mechanism="voucher", account_kind="voucher"),
            provider(),
            ["mechanism_not_offered"],
        ),
        (mobile(currency="USD"), provider(), ["currency_not_offered"]),
        (mobile(), provider(service_areas=("KE-0470", "KE-001")), ["location_not_served"]),
        (cash(OTHER_POINT), provider(), ["pay_point_unavailable"]),
        (cash(UUID(int=7)), provider(), ["pay_point_unavailable"]),
        (
            cash(),
            provider(pay_points={POINT: PayPointView(POINT, False, ("KE-047",))}),
            ["pay_point_unavailable"],
        ),
        (
            mobile(),
            provider(active=False, currencies=frozenset({"UGX"})),
            ["provider_suspended", "currency_not_offered"],
        ),
    ],
    ids=[
        "unknown",
        "suspended",
        "mechanism",
        "currency",
        "not served at a separator",
        "pay point elsewhere",
        "no such pay point",
        "pay point inactive",
        "two reasons",
    ],
)
def test_provider_problems_name_each_reason(
    terms: PreferenceTerms, view: ProviderView | None, reasons: list[str]
) -> None:
    assert [p.reason for p in provider_problems(terms, view, HOME)] == reasons


@pytest.mark.parametrize(
    ("terms", "fields"),
    [
        (mobile(account_kind=None), ["account"]),
        (mobile(account_kind="iban"), ["account"]),
        (mobile(mechanism="cash_pay_point", account_kind=None), ["pay_point_id"]),
        (mobile(mechanism="cash_pay_point", pay_point_id=POINT), ["account"]),
        (mobile(pay_point_id=POINT), ["pay_point_id"]),
        (mobile(mechanism="bank_transfer", account_kind="bank_account"), []),
    ],
)
def test_each_mechanism_takes_its_own_account(terms: PreferenceTerms, fields: list[str]) -> None:
    assert [p.field for p in preference_shape_problems(terms)] == fields


def test_payability_lists_every_reason_in_order() -> None:
    assert payability("active", False, mobile(), provider(), HOME) == (True, [])
    assert payability("under_review", True, None, None, HOME) == (
        False,
        ["status_not_active", "under_review", "no_payment_preference"],
    )
    assert payability("active", False, mobile(), provider(active=False), HOME) == (
        False,
        ["provider_suspended"],
    )
    assert payability("suspended", True, mobile(), provider(), HOME)[1] == [
        "status_not_active",
        "under_review",
    ]


# --- roles -----------------------------------------------------------------------------------

HEAD, SPOUSE, CHILD = UUID(int=1), UUID(int=2), UUID(int=3)


def test_removing_the_primary_recipient_gives_the_role_back_to_the_head() -> None:
    assert roles_after_removal(Roles(HEAD, SPOUSE), SPOUSE) == Roles(HEAD, HEAD)
    assert roles_after_removal(Roles(HEAD, SPOUSE), CHILD) == Roles(HEAD, SPOUSE)
    with pytest.raises(RuleBroken) as refused:
        roles_after_removal(Roles(HEAD, SPOUSE), HEAD)
    assert refused.value.code == "head-removal"


def test_a_new_head_takes_the_payments_only_from_a_head_that_had_them() -> None:
    assert roles_after_change(Roles(HEAD, HEAD), SPOUSE, make_head=True, make_recipient=None) == (
        Roles(SPOUSE, SPOUSE)
    )
    assert roles_after_change(Roles(HEAD, CHILD), SPOUSE, make_head=True, make_recipient=None) == (
        Roles(SPOUSE, CHILD)
    )


def test_naming_and_unnaming_the_primary_recipient() -> None:
    assert roles_after_change(Roles(HEAD, HEAD), CHILD, make_head=False, make_recipient=True) == (
        Roles(HEAD, CHILD)
    )
    assert roles_after_change(
        Roles(HEAD, CHILD), CHILD, make_head=False, make_recipient=False
    ) == Roles(HEAD, HEAD)
    with pytest.raises(RuleBroken):
        roles_after_change(Roles(HEAD, HEAD), HEAD, make_head=False, make_recipient=False)


# --- history ---------------------------------------------------------------------------------


def test_flatten_keys_list_items_by_id_or_scheme() -> None:
    document: dict[str, Any] = {
        "phone": "+254700000001",
        "gps": None,
        "eligibility_attributes": {},
        "members": [
            {
                "id": "m1",
                "given_name": "Amina",
                "identifiers": [{"scheme": "national_id", "value": "1"}],
            },
        ],
    }

    assert flatten(document) == {
        "phone": "+254700000001",
        "gps": None,
        "eligibility_attributes": {},
        "members[m1].id": "m1",
        "members[m1].given_name": "Amina",
        "members[m1].identifiers[national_id].scheme": "national_id",
        "members[m1].identifiers[national_id].value": "1",
    }


def test_field_changes_give_before_and_after_of_what_differs() -> None:
    before = {"phone": "+254700000001", "members[m1].given_name": "Amina", "address": None}
    after = {"phone": "+254700000002", "members[m1].given_name": "Amina", "members[m2].id": "m2"}

    assert field_changes(before, after) == [
        {"field": "members[m2].id", "before": None, "after": "m2"},
        {"field": "phone", "before": "+254700000001", "after": "+254700000002"},
    ]
