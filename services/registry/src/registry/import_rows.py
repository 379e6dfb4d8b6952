"""Households of a bulk import as plain data and rows of the registry's tables (COPY column
order): new ones built straight from the cleaned drafts, with their status and change history
rows, as `service.new_household` and `service.enrolment_records` make them, without an ORM
object per row (building those, and the pydantic document of the history, was a fifth of an
import's CPU). `document` is `service`'s change-history document of a household, built from
the plain data. Pure: no session.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

from pydantic_core import to_jsonable_python
from uuid6 import uuid7

from amana_common.check_digits import numbered
from registry import domain
from registry.cleaning import HouseholdDraft
from registry.generate import (
    HOUSEHOLD_COLUMNS,
    IDENTIFIER_COLUMNS,
    MEMBER_COLUMNS,
    PREFERENCE_COLUMNS,
)
from registry.service import ENROLLED_REASON, HOUSEHOLD_NUMBER_DIGITS, HOUSEHOLD_NUMBER_PREFIX

STATUS_CHANGE_COLUMNS = (
    "id",
    "household_id",
    "from_status",
    "to_status",
    "reason",
    "changed_at",
    "changed_by",
)
CHANGE_COLUMNS = ("id", "household_id", "version", "action", "changed_at", "changed_by", "changes")


@dataclass(slots=True)
class PlainIdentifier:
    scheme: str
    value: str


@dataclass(slots=True)
class PlainMember:
    id: UUID
    household_id: UUID
    position: int
    is_head: bool
    is_primary_recipient: bool
    relationship: str
    given_name: str
    family_name: str
    sex: str
    date_of_birth: date
    disability: bool
    phone: str | None
    identifiers: list[PlainIdentifier] = field(default_factory=list)


@dataclass(slots=True)
class PlainPreference:
    provider_id: UUID
    mechanism: str
    currency: str
    pay_point_id: UUID | None
    account_kind: str | None
    account_value: str | None
    bank_code: str | None
    holder_name: str | None
    set_at: datetime


@dataclass(slots=True)
class PlainHousehold:
    id: UUID
    household_number: str
    location_code: str
    status: str
    status_reason: str | None
    status_changed_at: datetime
    address: str | None
    phone: str | None
    latitude: float | None
    longitude: float | None
    eligibility_attributes: dict[str, Any]
    duplicate_review_open: bool
    enrolled_at: datetime
    updated_at: datetime
    version: int
    members: list[PlainMember] = field(default_factory=list)
    payment_preference: PlainPreference | None = None


def new_household(
    draft: HouseholdDraft, sequence: int, now: datetime, preference: PlainPreference | None
) -> PlainHousehold:
    """A new active household from a cleaned draft, numbered from `sequence`."""
    household = PlainHousehold(
        id=uuid7(),
        household_number=numbered(HOUSEHOLD_NUMBER_PREFIX, sequence, HOUSEHOLD_NUMBER_DIGITS),
        location_code=draft.location_code,
        status=domain.ACTIVE,
        status_reason=None,
        status_changed_at=now,
        address=draft.address,
        phone=draft.phone,
        latitude=draft.latitude,
        longitude=draft.longitude,
        eligibility_attributes=dict(draft.eligibility_attributes),
        duplicate_review_open=False,
        enrolled_at=now,
        updated_at=now,
        version=1,
        payment_preference=preference,
    )
    for position, member in enumerate(draft.members):
        member_id = uuid7()
        household.members.append(
            PlainMember(
                id=member_id,
                household_id=household.id,
                position=position,
                is_head=member.relationship == "head",
                is_primary_recipient=member.is_primary_recipient,
                relationship=member.relationship,
                given_name=member.given_name,
                family_name=member.family_name,
                sex=member.sex,
                date_of_birth=member.date_of_birth,
                disability=member.disability,
                phone=member.phone,
                identifiers=[PlainIdentifier(i.scheme, i.value) for i in member.identifiers],
            )
        )
    return household


def document(household: PlainHousehold) -> dict[str, Any]:
    """The household as its change history compares it (`service`'s document: the API's
    view, flattened, without the bookkeeping fields)."""
    preference = household.payment_preference
    gps = (
        {"latitude": float(household.latitude), "longitude": float(household.longitude)}
        if household.latitude is not None and household.longitude is not None
        else None
    )
    return domain.flatten(
        {
            "location_code": household.location_code,
            "status": household.status,
            "status_reason": household.status_reason,
            "address": household.address,
            "phone": household.phone,
            "gps": gps,
            "eligibility_attributes": to_jsonable_python(household.eligibility_attributes),
            "duplicate_review_open": household.duplicate_review_open,
            "payment_preference": None if preference is None else _preference_document(preference),
            "members": [_member_document(member) for member in household.members],
        }
    )


def _member_document(member: PlainMember) -> dict[str, Any]:
    return {
        "id": str(member.id),
        "is_head": member.is_head,
        "is_primary_recipient": member.is_primary_recipient,
        "relationship": member.relationship,
        "given_name": member.given_name,
        "family_name": member.family_name,
        "sex": member.sex,
        "date_of_birth": member.date_of_birth.isoformat(),
        "disability": member.disability,
        "phone": member.phone,
        "identifiers": [{"scheme": i.scheme, "value": i.value} for i in member.identifiers],
    }


def _preference_document(preference: PlainPreference) -> dict[str, Any]:
    account = (
        {
            "kind": preference.account_kind,
            "value": preference.account_value,
            "bank_code": preference.bank_code,
            "holder_name": preference.holder_name,
        }
        if preference.account_kind is not None and preference.account_value is not None
        else None
    )
    return {
        "provider_id": str(preference.provider_id),
        "mechanism": preference.mechanism,
        "currency": preference.currency,
        "pay_point_id": None if preference.pay_point_id is None else str(preference.pay_point_id),
        "account": account,
        "set_at": to_jsonable_python(preference.set_at),
    }


class Rows:
    """Rows to COPY into the registry's tables, a chunk's worth."""

    def __init__(self) -> None:
        self.households: list[tuple[Any, ...]] = []
        self.members: list[tuple[Any, ...]] = []
        self.identifiers: list[tuple[Any, ...]] = []
        self.preferences: list[tuple[Any, ...]] = []
        self.statuses: list[tuple[Any, ...]] = []
        self.history: list[tuple[Any, ...]] = []

    def enrolled(self, household: PlainHousehold, actor: str | None, now: datetime) -> None:
        """A new household: its rows, its status row (none -> active) and its history row
        (`enrolled`, every field)."""
        h = household
        self.households.append(
            (
                h.id,
                h.household_number,
                h.location_code,
                h.status,
                h.status_changed_at,
                h.address,
                h.phone,
                h.latitude,
                h.longitude,
                json.dumps(h.eligibility_attributes),
                h.duplicate_review_open,
                h.enrolled_at,
                h.updated_at,
                h.version,
            )
        )
        self.add_members(h.members)
        p = h.payment_preference
        if p is not None:
            self.preferences.append(
                (
                    h.id,
                    p.provider_id,
                    p.mechanism,
                    p.currency,
                    p.pay_point_id,
                    p.account_kind,
                    p.account_value,
                    p.bank_code,
                    p.holder_name,
                    p.set_at,
                )
            )
        self.statuses.append((uuid7(), h.id, None, h.status, ENROLLED_REASON, now, actor))
        self.changed(h, "enrolled", domain.field_changes({}, document(h)), actor, now)

    def add_members(self, members: Sequence[PlainMember], *, with_roles: bool = True) -> None:
        """Member rows with their identifiers (`with_roles` False: holding no role yet)."""
        for m in members:
            self.members.append(
                (
                    m.id,
                    m.household_id,
                    m.position,
                    with_roles and m.is_head,
                    with_roles and m.is_primary_recipient,
                    m.relationship,
                    m.given_name,
                    m.family_name,
                    m.sex,
                    m.date_of_birth,
                    m.disability,
                    m.phone,
                )
            )
            self.add_identifiers(m)

    def add_identifiers(self, member: PlainMember) -> None:
        self.identifiers.extend(
            (member.id, i.scheme, i.value, member.household_id, False) for i in member.identifiers
        )

    def changed(
        self,
        household: PlainHousehold,
        action: str,
        changes: list[dict[str, Any]],
        actor: str | None,
        now: datetime,
    ) -> None:
        """The change history row of the household's current version."""
        self.history.append(
            (
                uuid7(),
                household.id,
                household.version,
                action,
                now,
                actor,
                json.dumps(changes, default=str),
            )
        )

    def tables(self) -> list[tuple[str, Sequence[str], Sequence[tuple[Any, ...]]]]:
        return [
            ("households", HOUSEHOLD_COLUMNS, self.households),
            ("members", MEMBER_COLUMNS, self.members),
            ("member_identifiers", IDENTIFIER_COLUMNS, self.identifiers),
            ("payment_preferences", PREFERENCE_COLUMNS, self.preferences),
            ("household_status_changes", STATUS_CHANGE_COLUMNS, self.statuses),
            ("household_changes", CHANGE_COLUMNS, self.history),
        ]
