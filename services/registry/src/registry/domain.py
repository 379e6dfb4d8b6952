"""Registry rules: the household status machine, the duplicate-review rule, payment preference
checks and payability, and field-level change history. Pure: no HTTP, no session.
(Cleaning of incoming values is in `cleaning.py`, pure as well.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from amana_common.locations import covered_by_any
from amana_contracts.registry import HouseholdStatus, NotPayableReason

ACTIVE: HouseholdStatus = "active"
UNDER_REVIEW: HouseholdStatus = "under_review"
SUSPENDED: HouseholdStatus = "suspended"
EXITED: HouseholdStatus = "exited"
CASH = "cash_pay_point"

REVIEW_OPENED_REASON = "duplicate review open"
REVIEW_CLOSED_REASON = "duplicate review closed"


class RuleBroken(Exception):
    """A request breaks a registry rule: `status` 409 or 422, `code` stable, `field` named."""

    def __init__(self, status: int, code: str, field_name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field_name
        self.message = message


# --- status ---------------------------------------------------------------------------------

# What an operator may do. `under_review` belongs to the duplicate review (below): operators do
# not set it, and may not make a household active while its review is open.
OPERATOR_TRANSITIONS: Mapping[str, frozenset[str]] = {
    ACTIVE: frozenset({SUSPENDED, EXITED}),
    UNDER_REVIEW: frozenset({ACTIVE, SUSPENDED, EXITED}),
    SUSPENDED: frozenset({ACTIVE, EXITED}),
    EXITED: frozenset(),  # final: a household that comes back is enrolled again
}


def check_operator_transition(current: str, target: str, review_open: bool) -> None:
    if target == current:
        raise RuleBroken(409, "status-unchanged", "status", f"the household is {current} already")
    if target not in OPERATOR_TRANSITIONS[current]:
        raise RuleBroken(
            409,
            "status-transition",
            "status",
            f"a household that is {current} cannot become "
            f"{target}" + (" (exited is final)" if current == EXITED else ""),
        )
    if target == ACTIVE and review_open:
        raise RuleBroken(
            409,
            "duplicate-review-open",
            "status",
            "the household has an open duplicate review: decide it before reactivating",
        )


def status_after_review(current: HouseholdStatus, review_open: bool) -> HouseholdStatus:
    """Opening a duplicate review puts an active household under review; closing it makes a
    household under review active again. Suspended and exited households keep their status
    (their flag still shows, and payroll leaves them out anyway)."""
    if review_open and current == ACTIVE:
        return UNDER_REVIEW
    if not review_open and current == UNDER_REVIEW:
        return ACTIVE
    return current


# --- payment preference ---------------------------------------------------------------------

# The account each mechanism pays to (cash is paid at a pay point, with no account).
ACCOUNT_KINDS: Mapping[str, frozenset[str]] = {
    "mobile_money": frozenset({"msisdn"}),
    "bank_transfer": frozenset({"iban", "bank_account"}),
    "prepaid_card": frozenset({"card"}),
    "voucher": frozenset({"voucher"}),
    CASH: frozenset(),
}


@dataclass(frozen=True)
class PayPointView:
    pay_point_id: UUID
    active: bool
    location_codes: tuple[str, ...]


@dataclass(frozen=True)
class ProviderView:
    """What the registry knows of a provider, from the provider's events."""

    provider_id: UUID
    active: bool
    mechanisms: frozenset[str]
    currencies: frozenset[str]
    service_areas: tuple[str, ...]
    pay_points: Mapping[UUID, PayPointView] = field(default_factory=dict)


@dataclass(frozen=True)
class PreferenceTerms:
    provider_id: UUID
    mechanism: str
    currency: str
    pay_point_id: UUID | None
    account_kind: str | None


@dataclass(frozen=True)
class PreferenceProblem:
    reason: NotPayableReason
    field: str
    message: str


def preference_shape_problems(terms: PreferenceTerms) -> list[PreferenceProblem]:
    """What the request itself gets wrong, whatever the provider: a pay point for cash and
    only for cash, an account of the kind the mechanism pays to."""
    problems = []
    if terms.mechanism == CASH and terms.pay_point_id is None:
        problems.append(
            PreferenceProblem("pay_point_unavailable", "pay_point_id", "cash needs a pay point")
        )
    if terms.mechanism != CASH and terms.pay_point_id is not None:
        problems.append(
            PreferenceProblem(
                "pay_point_unavailable", "pay_point_id", "only cash_pay_point takes a pay point"
            )
        )
    kinds = ACCOUNT_KINDS[terms.mechanism]
    if kinds and terms.account_kind not in kinds:
        problems.append(
            PreferenceProblem(
                "account_missing",
                "account",
                f"{terms.mechanism} needs an account of kind {' or '.join(sorted(kinds))}",
            )
        )
    if not kinds and terms.account_kind is not None:
        problems.append(
            PreferenceProblem("account_missing", "account", "cash_pay_point takes no account")
        )
    return problems


def provider_problems(
    terms: PreferenceTerms, provider: ProviderView | None, location_code: str
) -> list[PreferenceProblem]:
    """Why this provider cannot pay this household on these terms now (empty when it can):
    it exists and is active, offers the mechanism and the currency, serves the location, and
    for cash owns an active pay point serving the location."""
    if provider is None:
        return [PreferenceProblem("provider_unknown", "provider_id", "no such provider")]
    problems = []
    if not provider.active:
        problems.append(
            PreferenceProblem("provider_suspended", "provider_id", "the provider is suspended")
        )
    if terms.mechanism not in provider.mechanisms:
        problems.append(
            PreferenceProblem(
                "mechanism_not_offered",
                "mechanism",
                f"the provider does not offer {terms.mechanism}",
            )
        )
    if terms.currency not in provider.currencies:
        problems.append(
            PreferenceProblem(
                "currency_not_offered", "currency", f"the provider does not pay in {terms.currency}"
            )
        )
    if not covered_by_any(location_code, provider.service_areas):
        problems.append(
            PreferenceProblem(
                "location_not_served",
                "provider_id",
                f"the provider does not serve the household's location {location_code}",
            )
        )
    if terms.mechanism == CASH and terms.pay_point_id is not None:
        problems.extend(_pay_point_problems(terms.pay_point_id, provider, location_code))
    return problems


def _pay_point_problems(
    pay_point_id: UUID, provider: ProviderView, location_code: str
) -> list[PreferenceProblem]:
    point = provider.pay_points.get(pay_point_id)
    if point is None:
        message = "the provider has no such pay point"
    elif not point.active:
        message = "the pay point is inactive"
    elif not covered_by_any(location_code, point.location_codes):
        message = f"the pay point does not serve the household's location {location_code}"
    else:
        return []
    return [PreferenceProblem("pay_point_unavailable", "pay_point_id", message)]


def payability(
    status: str,
    review_open: bool,
    terms: PreferenceTerms | None,
    provider: ProviderView | None,
    location_code: str,
) -> tuple[bool, list[NotPayableReason]]:
    """Whether a payment can be made now and, if not, every reason why (in a stable order)."""
    reasons: list[NotPayableReason] = []
    if status != ACTIVE:
        reasons.append("status_not_active")
    if review_open or status == UNDER_REVIEW:
        reasons.append("under_review")
    if terms is None:
        reasons.append("no_payment_preference")
    else:
        found = [
            *preference_shape_problems(terms),
            *provider_problems(terms, provider, location_code),
        ]
        reasons.extend(_unique(problem.reason for problem in found))
    return not reasons, reasons


def _unique(reasons: Iterable[NotPayableReason]) -> list[NotPayableReason]:
    return list(dict.fromkeys(reasons))


# --- members --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roles:
    """Who is head and who is primary recipient, by member id."""

    head: UUID
    primary_recipient: UUID


def roles_after_removal(roles: Roles, removed: UUID) -> Roles:
    """Removing the head is refused (name another head first); removing the primary recipient
    gives the role back to the head."""
    if removed == roles.head:
        raise RuleBroken(
            409,
            "head-removal",
            "member_id",
            "the head cannot be removed: make another member head first",
        )
    if removed == roles.primary_recipient:
        return Roles(roles.head, roles.head)
    return roles


def roles_after_change(
    roles: Roles, member: UUID, *, make_head: bool, make_recipient: bool | None
) -> Roles:
    """A member made head takes the role from the old head, and the primary recipient role too
    when the old head held it; `make_recipient` True names the member primary recipient, False
    (on the current primary recipient) gives it back to the head."""
    head = member if make_head else roles.head
    recipient = roles.primary_recipient
    if make_head and recipient == roles.head:
        recipient = member
    if make_recipient:
        recipient = member
    elif make_recipient is False and recipient == member:
        if head == member:
            raise RuleBroken(
                409,
                "recipient-required",
                "is_primary_recipient",
                "the head receives the payments unless another member is named",
            )
        recipient = head
    return Roles(head, recipient)


# --- history --------------------------------------------------------------------------------


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested document as `path -> value`: list items are keyed by their `id` (or `scheme`),
    not their position, so removing a member does not shift the others' paths."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}.") if value else {path: {}})
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for index, item in enumerate(value):
                item_key = item.get("id", item.get("scheme", index))
                flat.update(flatten(item, f"{path}[{item_key}]."))
        else:
            flat[path] = value
    return flat


def field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every field whose value differs, with both values (None for a field added or removed)."""
    return [
        {"field": path, "before": before.get(path), "after": after.get(path)}
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    ]
