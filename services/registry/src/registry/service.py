"""Registry use cases. They take the caller's session and never commit.

Every change of a household locks its row, checks the version the client read (If-Match),
applies the change, increments `version`, writes one `household_changes` row (who, when, every
field before and after) and publishes the household's whole snapshot (HouseholdEnrolled,
HouseholdUpdated or HouseholdStatusChanged) to the outbox, all in the caller's transaction.
Refused input raises a Problem before anything is written.

Seams for the import, export and duplicate work (README, "Registry seams"):
- `save_household(session, cleaned, actor, household=None)`: create or replace a household from
  a draft that `cleaning.clean_household` accepted;
- `set_duplicate_review(session, household_ids, open=..., actor=...)`: opens or closes the
  duplicate review of households, moving `active` <-> `under_review`;
- `republish_for_provider(session, provider_id)`: new snapshots of the households whose
  payment preference names a provider that changed (the provider projection's step).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from amana_common.check_digits import numbered
from amana_common.errors import Problem
from amana_common.etag import IfMatch
from amana_common.events import add_to_outbox
from amana_contracts.registry import (
    AccountV1,
    HouseholdEnrolledV1,
    HouseholdSnapshotV1,
    HouseholdStatus,
    HouseholdStatusChangedV1,
    HouseholdUpdatedV1,
    IdentifierV1,
    MemberV1,
    PaymentPreferenceV1,
    RecipientV1,
)
from registry import domain, repository
from registry.cleaning import (
    Cleaned,
    CleaningRules,
    HouseholdDraft,
    IdentifierDraft,
    MemberDraft,
    clean_account,
    clean_attributes,
    clean_household,
    clean_location,
    clean_member,
    clean_phone,
    clean_text,
)
from registry.domain import PreferenceTerms, ProviderView, RuleBroken
from registry.models import (
    Household,
    HouseholdChange,
    HouseholdStatusChange,
    Member,
    MemberIdentifier,
    PaymentPreference,
)
from registry.schemas import (
    GpsOut,
    HouseholdIn,
    HouseholdOut,
    HouseholdPatch,
    MemberOut,
    MemberPatch,
    NewMemberIn,
    PaymentPreferenceIn,
    PaymentPreferenceOut,
    StatusIn,
)

T = TypeVar("T")

HOUSEHOLD_NUMBER_PREFIX = "H"
HOUSEHOLD_NUMBER_DIGITS = 9
ENROLLED_REASON = "enrolled"
IDENTIFIER_INDEX = "uq_member_identifiers_scheme_value"
ROLE_TRIGGERS = "registry_household_roles_on_households, registry_household_roles_on_members"
# Which identifier a provider checks at payment, best first.
RECIPIENT_IDENTIFIER_ORDER = ("national_id", "passport", "voter_id", "birth_certificate")


@dataclass(frozen=True)
class Context:
    """What a use case needs from configuration and from the caller."""

    rules: CleaningRules
    default_currency: str
    max_members: int
    actor: str | None

    @property
    def today(self) -> date:
        return datetime.now(UTC).date()


# --- problems --------------------------------------------------------------------------------


def cleaned_or_refused(cleaned: Cleaned[T]) -> T:
    """The cleaned value, or a 422 naming every refused field."""
    if cleaned.value is None or cleaned.report.refusals:
        refusals = cleaned.report.refusals
        raise Problem(
            422,
            "validation-error",
            "; ".join(f"{r.field}: {r.message}" for r in refusals[:5]),
            errors=[
                {"field": r.field, "in": "body", "code": r.code, "message": r.message}
                for r in refusals
            ],
        )
    return cleaned.value


def _broken(error: RuleBroken) -> Problem:
    field_name = error.field
    return Problem(
        error.status,
        error.code,
        error.message,
        errors=[{"field": field_name, "message": error.message}],
    )


def _not_found(household_id: UUID) -> Problem:
    return Problem(404, "household-not-found", f"No household {household_id}")


# --- reading ---------------------------------------------------------------------------------


async def household_by_id(session: AsyncSession, household_id: UUID) -> Household:
    household = await repository.get_household(session, household_id)
    if household is None:
        raise _not_found(household_id)
    return household


async def _for_change(session: AsyncSession, household_id: UUID, if_match: IfMatch) -> Household:
    """The household locked for a change, at the version the client read, not exited."""
    household = await repository.get_household(session, household_id, for_update=True)
    if household is None:
        raise _not_found(household_id)
    if_match.require(household.version)
    if household.status == domain.EXITED:
        raise Problem(409, "household-exited", "the household has exited and cannot change")
    return household


def present(household: Household) -> HouseholdOut:
    preference = household.payment_preference
    return HouseholdOut(
        id=household.id,
        household_number=household.household_number,
        location_code=household.location_code,
        status=household.status,
        status_reason=household.status_reason,
        status_changed_at=household.status_changed_at,
        address=household.address,
        phone=household.phone,
        gps=(
            GpsOut(latitude=household.latitude, longitude=household.longitude)
            if household.latitude is not None and household.longitude is not None
            else None
        ),
        eligibility_attributes=household.eligibility_attributes,
        duplicate_review_open=household.duplicate_review_open,
        payment_preference=(
            PaymentPreferenceOut.model_validate(
                _preference_v1(preference).model_dump() | {"set_at": preference.set_at}
            )
            if preference is not None
            else None
        ),
        enrolled_at=household.enrolled_at,
        updated_at=household.updated_at,
        version=household.version,
        members=[MemberOut.model_validate(member) for member in household.members],
    )


# Not part of the change history: bookkeeping that changes with every change.
_UNTRACKED = {"id", "household_number", "version", "updated_at", "enrolled_at", "status_changed_at"}


def _document(household: Household) -> dict[str, Any]:
    return domain.flatten(present(household).model_dump(mode="json", exclude=_UNTRACKED))


# --- enrolment and the importers' seam ------------------------------------------------------


async def enrol_household(session: AsyncSession, body: HouseholdIn, context: Context) -> Household:
    """Cleans the request, checks its payment preference and writes the household with its
    HouseholdEnrolled event."""
    cleaned = clean_household(body.draft(), context.rules, context.today)
    draft = cleaned_or_refused(cleaned)
    preference = None
    if body.payment_preference is not None:
        preference = await _checked_preference(
            session, body.payment_preference, draft.location_code, context, "payment_preference"
        )
    return await save_household(session, draft, context.actor, preference=preference)


async def save_household(
    session: AsyncSession,
    draft: HouseholdDraft,
    actor: str | None,
    *,
    household: Household | None = None,
    preference: PaymentPreference | None = None,
    action: str = "replaced",
) -> Household:
    """Creates a household from a cleaned draft (`household` None), or replaces the fields and
    members of `household` (loaded with `repository.get_household(..., for_update=True)`) with
    the draft's: members are matched by identifier, else by name and date of birth; those not
    matched are removed, new ones added; a `preference` given replaces the household's (the
    caller checked it). Raises a 409 Problem when an identifier is held by another household
    that has not exited, naming it. The caller cleaned the draft (`cleaning.clean_household`)
    and keeps the cleaning report. `action` names the change in the history."""
    now = datetime.now(UTC)
    if household is None:
        return await _create(session, draft, actor, preference, now)
    before = _document(household)
    _apply_household_fields(household, draft)
    if preference is not None:
        await _replace_preference(session, household, preference, now)
    await _replace_members(session, household, draft.members)
    await _changed(session, household, before, action, actor, now)
    return household


async def _replace_preference(
    session: AsyncSession, household: Household, preference: PaymentPreference, now: datetime
) -> None:
    preference.household_id = household.id
    preference.set_at = now
    if household.payment_preference is not None:
        household.payment_preference = None
        await session.flush()
    household.payment_preference = preference


async def _create(
    session: AsyncSession,
    draft: HouseholdDraft,
    actor: str | None,
    preference: PaymentPreference | None,
    now: datetime,
) -> Household:
    sequence = await repository.next_household_sequence(session)
    household = new_household(draft, sequence, now, preference)
    await _refuse_held_identifiers(session, household.id, draft.members)
    status_change, _ = enrolment_records(household, actor, now, with_history=False)
    repository.add(session, household, status_change)
    await _flush(session)
    await _history(session, household, {}, "enrolled", actor, now)
    await _publish(session, household, HouseholdEnrolledV1)
    return household


def new_household(
    draft: HouseholdDraft,
    sequence: int,
    now: datetime,
    preference: PaymentPreference | None = None,
) -> Household:
    """A new active household (not yet added to a session) from a cleaned draft, numbered from
    `sequence`, with its members, identifiers and payment preference; the bulk import writes
    the same objects set-based."""
    household = Household(
        id=uuid7(),
        household_number=numbered(HOUSEHOLD_NUMBER_PREFIX, sequence, HOUSEHOLD_NUMBER_DIGITS),
        status=domain.ACTIVE,
        status_reason=None,
        status_changed_at=now,
        duplicate_review_open=False,
        enrolled_at=now,
        updated_at=now,
        version=1,
        members=[],
        payment_preference=None,
    )
    _apply_household_fields(household, draft)
    household.members = [
        _new_member(household.id, position, member) for position, member in enumerate(draft.members)
    ]
    if preference is not None:
        preference.household_id = household.id
        preference.set_at = now
        household.payment_preference = preference
    return household


def enrolment_records(
    household: Household, actor: str | None, now: datetime, *, with_history: bool = True
) -> tuple[HouseholdStatusChange, HouseholdChange | None]:
    """The status history row (none -> active) and, `with_history`, the change history row
    (`enrolled`, every field) of a new household."""
    status_change = _status_row(household.id, None, domain.ACTIVE, ENROLLED_REASON, actor, now)
    history = (
        HouseholdChange(
            id=uuid7(),
            household_id=household.id,
            version=household.version,
            action="enrolled",
            changed_at=now,
            changed_by=actor,
            changes=domain.field_changes({}, _document(household)),
        )
        if with_history
        else None
    )
    return status_change, history


def _apply_household_fields(household: Household, draft: HouseholdDraft) -> None:
    household.location_code = draft.location_code
    household.address = draft.address
    household.phone = draft.phone
    household.latitude = draft.latitude
    household.longitude = draft.longitude
    household.eligibility_attributes = dict(draft.eligibility_attributes)


def _new_member(
    household_id: UUID, position: int, member: MemberDraft, *, with_roles: bool = True
) -> Member:
    """A member row; `with_roles` False adds it holding no role (`_set_roles` gives them)."""
    member_id = uuid7()
    return Member(
        id=member_id,
        household_id=household_id,
        position=position,
        is_head=with_roles and member.relationship == "head",
        is_primary_recipient=with_roles and member.is_primary_recipient,
        relationship=member.relationship,
        given_name=member.given_name,
        family_name=member.family_name,
        sex=member.sex,
        date_of_birth=member.date_of_birth,
        disability=member.disability,
        phone=member.phone,
        identifiers=_identifiers(household_id, member_id, member.identifiers),
    )


def _identifiers(
    household_id: UUID, member_id: UUID, identifiers: Iterable[IdentifierDraft]
) -> list[MemberIdentifier]:
    return [
        MemberIdentifier(
            member_id=member_id,
            household_id=household_id,
            household_exited=False,
            scheme=identifier.scheme,
            value=identifier.value,
        )
        for identifier in identifiers
    ]


async def _replace_members(
    session: AsyncSession, household: Household, drafts: Sequence[MemberDraft]
) -> None:
    matches = _match_members(household.members, drafts)
    kept = {id(member) for member in matches.values()}
    removed = [member for member in household.members if id(member) not in kept]
    # Roles are given up before they are taken: the unique indexes allow one holder at a time.
    for index, member in matches.items():
        if drafts[index].relationship != "head":
            member.is_head = False
        if not drafts[index].is_primary_recipient:
            member.is_primary_recipient = False
    for member in removed:
        household.members.remove(member)
    await session.flush()
    position = max((m.position for m in household.members), default=-1) + 1
    for index, draft in enumerate(drafts):
        matched = matches.get(index)
        if matched is None:
            household.members.append(_new_member(household.id, position, draft))
            position += 1
        else:
            _apply_member_fields(matched, draft)
            matched.is_head = draft.relationship == "head"
            matched.is_primary_recipient = draft.is_primary_recipient
    await _refuse_held_identifiers(session, household.id, drafts)


def _match_members(members: Sequence[Member], drafts: Sequence[MemberDraft]) -> dict[int, Member]:
    """Draft index -> existing member: a shared identifier first, else the same folded names
    and date of birth."""
    by_identifier = {
        (identifier.scheme, identifier.value): member
        for member in members
        for identifier in member.identifiers
    }
    by_name = {_name_key(m.given_name, m.family_name, m.date_of_birth): m for m in members}
    matches: dict[int, Member] = {}
    taken: set[int] = set()
    for index, draft in enumerate(drafts):
        candidates = [by_identifier.get((i.scheme, i.value)) for i in draft.identifiers]
        candidates.append(
            by_name.get(_name_key(draft.given_name, draft.family_name, draft.date_of_birth))
        )
        member = next((c for c in candidates if c is not None and id(c) not in taken), None)
        if member is not None:
            matches[index] = member
            taken.add(id(member))
    return matches


def _name_key(given: str, family: str, born: date) -> tuple[str, str, date]:
    return (given.casefold(), family.casefold(), born)


def _apply_member_fields(member: Member, draft: MemberDraft) -> None:
    """The member's data; its roles are set apart (`_set_roles`, `_replace_members`)."""
    member.relationship = draft.relationship
    member.given_name = draft.given_name
    member.family_name = draft.family_name
    member.sex = draft.sex
    member.date_of_birth = draft.date_of_birth
    member.disability = draft.disability
    member.phone = draft.phone
    wanted = {(i.scheme, i.value) for i in draft.identifiers}
    current = {(i.scheme, i.value) for i in member.identifiers}
    if wanted != current:
        member.identifiers = _identifiers(member.household_id, member.id, draft.identifiers)


# --- identifiers, roles and flushing ---------------------------------------------------------


async def _refuse_held_identifiers(
    session: AsyncSession, household_id: UUID, members: Sequence[MemberDraft]
) -> None:
    fields = _identifier_fields(members)
    await repository.lock_identifiers(session, list(fields))
    holders = await repository.identifier_holders(session, list(fields), household_id)
    if holders:
        raise _identifier_clash(holders, fields)


def _identifier_fields(members: Sequence[MemberDraft]) -> dict[tuple[str, str], str]:
    return {
        (identifier.scheme, identifier.value): f"members.{index}.identifiers.{position}.value"
        for index, member in enumerate(members)
        for position, identifier in enumerate(member.identifiers)
    }


def _identifier_clash(
    holders: Sequence[repository.IdentifierHolder], fields: dict[tuple[str, str], str]
) -> Problem:
    errors = [
        {
            "field": fields.get((holder.scheme, holder.value), "identifiers"),
            "message": f"this {holder.scheme} is held by household {holder.household_number}",
            "household_id": str(holder.household_id),
            "household_number": holder.household_number,
        }
        for holder in holders
    ]
    numbers = ", ".join(sorted({holder.household_number for holder in holders}))
    return Problem(
        409,
        "identifier-taken",
        f"an identifier is already held by household {numbers}",
        errors=errors,
    )


async def _flush(session: AsyncSession) -> None:
    """Flushes, then checks the household roles now rather than at commit, so that a broken
    household is a 409 here and not a failed commit. An identifier taken meanwhile cannot get
    past `_refuse_held_identifiers` (it locks them); should one reach the unique index, the
    answer is still a 409."""
    try:
        await session.flush()
        await session.execute(text(f"SET CONSTRAINTS {ROLE_TRIGGERS} IMMEDIATE"))
        await session.execute(text(f"SET CONSTRAINTS {ROLE_TRIGGERS} DEFERRED"))
    except IntegrityError as error:
        if IDENTIFIER_INDEX not in str(error.orig):
            raise
        raise Problem(
            409, "identifier-taken", "an identifier was enrolled elsewhere meanwhile: retry"
        ) from error
    except DBAPIError as error:
        if "registry_household_roles" not in str(error.orig):
            raise
        raise Problem(
            409, "household-roles", "a household needs exactly one head and one primary recipient"
        ) from error


async def _set_roles(session: AsyncSession, household: Household, roles: domain.Roles) -> None:
    """Gives up roles before taking them (the unique indexes allow one holder at a time)."""
    for member in household.members:
        if member.is_head and member.id != roles.head:
            member.is_head = False
        if member.is_primary_recipient and member.id != roles.primary_recipient:
            member.is_primary_recipient = False
    await session.flush()
    for member in household.members:
        member.is_head = member.id == roles.head
        member.is_primary_recipient = member.id == roles.primary_recipient


def _roles(household: Household) -> domain.Roles:
    head = next(m.id for m in household.members if m.is_head)
    recipient = next(m.id for m in household.members if m.is_primary_recipient)
    return domain.Roles(head, recipient)


# --- recording a change ----------------------------------------------------------------------


async def _changed(
    session: AsyncSession,
    household: Household,
    before: dict[str, Any],
    action: str,
    actor: str | None,
    now: datetime,
    event: type[HouseholdSnapshotV1] = HouseholdUpdatedV1,
    **event_fields: Any,
) -> None:
    household.version += 1
    household.updated_at = now
    await _flush(session)
    await _history(session, household, before, action, actor, now)
    await _publish(session, household, event, **event_fields)


async def _history(
    session: AsyncSession,
    household: Household,
    before: dict[str, Any],
    action: str,
    actor: str | None,
    now: datetime,
) -> None:
    repository.add(
        session,
        HouseholdChange(
            id=uuid7(),
            household_id=household.id,
            version=household.version,
            action=action,
            changed_at=now,
            changed_by=actor,
            changes=domain.field_changes(before, _document(household)),
        ),
    )
    await session.flush()


async def _publish(
    session: AsyncSession,
    household: Household,
    event: type[HouseholdSnapshotV1],
    **event_fields: Any,
) -> None:
    provider = await _provider_of(session, household)
    await add_to_outbox(session, event(**snapshot(household, provider), **event_fields))


async def _provider_of(session: AsyncSession, household: Household) -> ProviderView | None:
    preference = household.payment_preference
    if preference is None:
        return None
    return await repository.provider_view(session, preference.provider_id)


# --- household fields and status -------------------------------------------------------------


async def update_household(
    session: AsyncSession,
    household_id: UUID,
    body: HouseholdPatch,
    if_match: IfMatch,
    context: Context,
) -> Household:
    household = await _for_change(session, household_id, if_match)
    before = _document(household)
    sent = body.model_fields_set
    if "location_code" in sent:
        if body.location_code is None:
            raise Problem(
                422,
                "validation-error",
                "location_code: may not be null",
                errors=[{"field": "location_code", "message": "may not be null"}],
            )
        household.location_code = cleaned_or_refused(
            clean_location("location_code", body.location_code, context.rules.locations)
        )
    if "address" in sent:
        household.address = (
            cleaned_or_refused(clean_text("address", body.address, multiline=True))
            if body.address is not None
            else None
        )
    if "phone" in sent:
        household.phone = (
            cleaned_or_refused(clean_phone("phone", body.phone, context.rules.phone_region))
            if body.phone is not None
            else None
        )
    if "gps" in sent:
        household.latitude = body.gps.latitude if body.gps else None
        household.longitude = body.gps.longitude if body.gps else None
    if "eligibility_attributes" in sent:
        household.eligibility_attributes = cleaned_or_refused(
            clean_attributes(
                "eligibility_attributes",
                body.eligibility_attributes or {},
                context.rules.attributes,
            )
        )
    await _changed(session, household, before, "updated", context.actor, datetime.now(UTC))
    return household


async def change_status(
    session: AsyncSession,
    household_id: UUID,
    body: StatusIn,
    if_match: IfMatch,
    actor: str | None,
) -> Household:
    """An operator's status change; leaving for `exited` frees the household's identifiers."""
    reason = cleaned_or_refused(clean_text("reason", body.reason))
    household = await _for_change(session, household_id, if_match)
    try:
        domain.check_operator_transition(
            household.status, body.status, household.duplicate_review_open
        )
    except RuleBroken as error:
        raise _broken(error) from error
    await _set_status(session, household, body.status, reason, actor)
    return household


async def _set_status(
    session: AsyncSession,
    household: Household,
    status: HouseholdStatus,
    reason: str,
    actor: str | None,
    before: dict[str, Any] | None = None,
) -> None:
    before = before if before is not None else _document(household)
    now = datetime.now(UTC)
    previous = household.status
    household.status = status
    household.status_reason = reason
    household.status_changed_at = now
    repository.add(session, _status_row(household.id, previous, status, reason, actor, now))
    if status == domain.EXITED:
        await session.flush()
        await repository.free_identifiers(session, household.id)
    await _changed(
        session,
        household,
        before,
        "status_changed",
        actor,
        now,
        HouseholdStatusChangedV1,
        previous_status=previous,
    )


async def set_duplicate_review(
    session: AsyncSession,
    household_ids: Sequence[UUID],
    *,
    open: bool,
    actor: str | None,
) -> list[Household]:
    """The duplicate work's seam: opens (or closes) the duplicate review of these households.
    `duplicate_review_open` is set (cleared); an active household becomes `under_review` (one
    under review becomes `active` again) with a HouseholdStatusChanged snapshot; a household
    whose status stays (suspended, exited) gets a HouseholdUpdated snapshot. Households already
    in the asked state are left alone, and so are exited ones when opening (closing clears
    their flag). Locks the households in id order; unknown ids are 404. Set-based: one query
    loads them, one flush writes them with their status and history rows, one insert publishes
    their snapshots (a batch duplicate run opens thousands of reviews)."""
    households = await repository.households_for_update(session, sorted(set(household_ids)))
    missing = set(household_ids) - {household.id for household in households}
    if missing:
        raise _not_found(sorted(missing)[0])
    changing = [
        household
        for household in households
        if household.duplicate_review_open != open
        and not (open and household.status == domain.EXITED)
    ]
    if not changing:
        return []
    now = datetime.now(UTC)
    before = {household.id: _document(household) for household in changing}
    previous = {household.id: household.status for household in changing}
    reason = domain.REVIEW_OPENED_REASON if open else domain.REVIEW_CLOSED_REASON
    rows: list[object] = []
    for household in changing:
        household.duplicate_review_open = open
        status = domain.status_after_review(household.status, open)
        if status != household.status:
            household.status, household.status_reason = status, reason
            household.status_changed_at = now
            rows.append(
                _status_row(household.id, previous[household.id], status, reason, actor, now)
            )
        household.version += 1
        household.updated_at = now
    for household in changing:
        moved = household.status != previous[household.id]
        rows.append(
            HouseholdChange(
                id=uuid7(),
                household_id=household.id,
                version=household.version,
                action="status_changed"
                if moved
                else ("duplicate_review_opened" if open else "duplicate_review_closed"),
                changed_at=now,
                changed_by=actor,
                changes=domain.field_changes(before[household.id], _document(household)),
            )
        )
    repository.add(session, *rows)
    await _flush(session)
    await _publish_many(session, changing, previous)
    return changing


def _status_row(
    household_id: UUID,
    from_status: str | None,
    to_status: str,
    reason: str,
    actor: str | None,
    now: datetime,
) -> HouseholdStatusChange:
    return HouseholdStatusChange(
        id=uuid7(),
        household_id=household_id,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
        changed_at=now,
        changed_by=actor,
    )


async def _publish_many(
    session: AsyncSession, households: Sequence[Household], previous: dict[UUID, HouseholdStatus]
) -> None:
    """Each household's snapshot: HouseholdStatusChanged when its status moved from
    `previous`, else HouseholdUpdated; the providers read once for all."""
    providers = await repository.provider_views(
        session,
        sorted(
            {h.payment_preference.provider_id for h in households if h.payment_preference},
        ),
    )
    events: list[HouseholdSnapshotV1] = []
    for household in households:
        preference = household.payment_preference
        provider = providers.get(preference.provider_id) if preference else None
        if household.status != previous[household.id]:
            events.append(
                HouseholdStatusChangedV1(
                    **snapshot(household, provider), previous_status=previous[household.id]
                )
            )
        else:
            events.append(HouseholdUpdatedV1(**snapshot(household, provider)))
    await add_to_outbox(session, *events)


async def republish_for_provider(
    session: AsyncSession, provider_id: UUID, batch_size: int = 500
) -> int:
    """The provider seam: a provider changed (suspended, reactivated, a mechanism, currency,
    area or pay point changed), so the households paying through it may have become payable
    or not. Each gets its next version and a HouseholdUpdated snapshot saying so, with a
    history row (`provider_changed`, no field of its own changed). Batches of `batch_size`
    households, each one query to load, one UPDATE and one outbox insert; answers how many."""
    provider = await repository.provider_view(session, provider_id)
    published = 0
    after: UUID | None = None
    while True:
        households = await repository.households_paying_through(
            session, provider_id, after, batch_size
        )
        if not households:
            return published
        now = datetime.now(UTC)
        await repository.next_versions(session, [household.id for household in households], now)
        repository.add(
            session,
            *(
                HouseholdChange(
                    id=uuid7(),
                    household_id=household.id,
                    version=household.version,
                    action="provider_changed",
                    changed_at=now,
                    changed_by=None,
                    changes=[],
                )
                for household in households
            ),
        )
        await session.flush()
        await add_to_outbox(
            session,
            *(HouseholdUpdatedV1(**snapshot(household, provider)) for household in households),
        )
        published += len(households)
        after = households[-1].id


# --- members ---------------------------------------------------------------------------------


async def add_member(
    session: AsyncSession,
    household_id: UUID,
    body: NewMemberIn,
    if_match: IfMatch,
    context: Context,
) -> Member:
    """Adds a member; one added as head takes the role (and the payments, when the old head
    had them) from the old head, whose relationship becomes `former_head_relationship`."""
    household = await _for_change(session, household_id, if_match)
    if len(household.members) >= context.max_members:
        raise Problem(
            422,
            "too-many-members",
            f"a household has at most {context.max_members} members",
            errors=[{"field": "members", "message": "too many members"}],
        )
    draft = cleaned_or_refused(clean_member("", body.draft(), context.rules, context.today))
    before = _document(household)
    roles = _roles(household)
    make_head = draft.relationship == "head"
    if make_head:
        _demote_head(household, roles, body.former_head_relationship)
    position = max(member.position for member in household.members) + 1
    member = _new_member(household.id, position, draft, with_roles=False)
    await _refuse_held_identifiers_of(session, household, member, draft)
    household.members.append(member)
    await session.flush()
    new_roles = _changed_roles(
        roles, member.id, make_head=make_head, make_recipient=draft.is_primary_recipient or None
    )
    await _set_roles(session, household, new_roles)
    await _changed(session, household, before, "member_added", context.actor, datetime.now(UTC))
    return member


async def update_member(
    session: AsyncSession,
    household_id: UUID,
    member_id: UUID,
    body: MemberPatch,
    if_match: IfMatch,
    context: Context,
) -> Member:
    """Changes the fields sent. `relationship: head` makes the member head (see add_member);
    `is_primary_recipient` true names the member primary recipient, false gives the role back
    to the head."""
    household = await _for_change(session, household_id, if_match)
    member = _member_of(household, member_id)
    before = _document(household)
    roles = _roles(household)
    sent = body.model_fields_set
    merged = MemberDraft(
        given_name=body.given_name or member.given_name,
        family_name=body.family_name or member.family_name,
        sex=body.sex or member.sex,
        date_of_birth=body.date_of_birth or member.date_of_birth,
        relationship=member.relationship,
        disability=member.disability if body.disability is None else body.disability,
        phone=body.phone if "phone" in sent else member.phone,
        identifiers=(
            tuple(identifier.draft() for identifier in body.identifiers)
            if body.identifiers is not None
            else tuple(IdentifierDraft(i.scheme, i.value) for i in member.identifiers)
        ),
    )
    draft = cleaned_or_refused(clean_member("", merged, context.rules, context.today))
    if body.identifiers is not None:
        await _refuse_held_identifiers_of(session, household, member, draft)
    make_head = body.relationship == "head" and not member.is_head
    if body.relationship not in (None, "head") and member.is_head:
        raise Problem(
            409,
            "head-relationship",
            "the head's relationship is 'head': make another member head first",
            errors=[{"field": "relationship", "message": "the member is the head"}],
        )
    if make_head:
        _demote_head(household, roles, body.former_head_relationship)
    _apply_member_fields(
        member, replace(draft, relationship=body.relationship or member.relationship)
    )
    new_roles = _changed_roles(
        roles, member.id, make_head=make_head, make_recipient=body.is_primary_recipient
    )
    await _set_roles(session, household, new_roles)
    await _changed(session, household, before, "member_updated", context.actor, datetime.now(UTC))
    return member


async def remove_member(
    session: AsyncSession,
    household_id: UUID,
    member_id: UUID,
    if_match: IfMatch,
    actor: str | None,
) -> Household:
    household = await _for_change(session, household_id, if_match)
    member = _member_of(household, member_id)
    before = _document(household)
    try:
        roles = domain.roles_after_removal(_roles(household), member.id)
    except RuleBroken as error:
        raise _broken(error) from error
    household.members.remove(member)
    await session.flush()
    await _set_roles(session, household, roles)
    await _changed(session, household, before, "member_removed", actor, datetime.now(UTC))
    return household


def _member_of(household: Household, member_id: UUID) -> Member:
    member = next((m for m in household.members if m.id == member_id), None)
    if member is None:
        raise Problem(404, "member-not-found", f"No member {member_id} in this household")
    return member


def _demote_head(household: Household, roles: domain.Roles, relationship: str | None) -> None:
    if relationship is None or relationship == "head":
        raise Problem(
            422,
            "former-head-relationship",
            "making another member head needs "
            "former_head_relationship: what the current head becomes (not 'head')",
            errors=[{"field": "former_head_relationship", "message": "required, not 'head'"}],
        )
    _member_of(household, roles.head).relationship = relationship


def _changed_roles(
    roles: domain.Roles, member: UUID, *, make_head: bool, make_recipient: bool | None
) -> domain.Roles:
    try:
        return domain.roles_after_change(
            roles, member, make_head=make_head, make_recipient=make_recipient
        )
    except RuleBroken as error:
        raise _broken(error) from error


async def _refuse_held_identifiers_of(
    session: AsyncSession, household: Household, member: Member, draft: MemberDraft
) -> None:
    """A member's identifiers: not held by another household, nor by another member here."""
    own = {(i.scheme, i.value) for m in household.members if m is not member for i in m.identifiers}
    for position, identifier in enumerate(draft.identifiers):
        if (identifier.scheme, identifier.value) in own:
            raise Problem(
                409,
                "identifier-taken",
                f"this {identifier.scheme} is held by another member of the household",
                errors=[
                    {
                        "field": f"identifiers.{position}.value",
                        "message": "held by another member of this household",
                    }
                ],
            )
    fields = {
        (i.scheme, i.value): f"identifiers.{position}.value"
        for position, i in enumerate(draft.identifiers)
    }
    await repository.lock_identifiers(session, list(fields))
    holders = await repository.identifier_holders(session, list(fields), household.id)
    if holders:
        raise _identifier_clash(holders, fields)


# --- payment preference ----------------------------------------------------------------------


async def set_payment_preference(
    session: AsyncSession,
    household_id: UUID,
    body: PaymentPreferenceIn,
    if_match: IfMatch,
    context: Context,
) -> Household:
    household = await _for_change(session, household_id, if_match)
    before = _document(household)
    preference = await _checked_preference(session, body, household.location_code, context, "")
    await _replace_preference(session, household, preference, datetime.now(UTC))
    await _changed(
        session, household, before, "payment_preference_set", context.actor, preference.set_at
    )
    return household


async def clear_payment_preference(
    session: AsyncSession, household_id: UUID, if_match: IfMatch, actor: str | None
) -> Household:
    household = await _for_change(session, household_id, if_match)
    if household.payment_preference is None:
        raise Problem(
            404, "payment-preference-not-found", "the household has no payment preference"
        )
    before = _document(household)
    household.payment_preference = None
    await _changed(
        session, household, before, "payment_preference_cleared", actor, datetime.now(UTC)
    )
    return household


async def _checked_preference(
    session: AsyncSession,
    body: PaymentPreferenceIn,
    location_code: str,
    context: Context,
    prefix: str,
) -> PaymentPreference:
    """A preference the provider projection says can be paid now, or a 422 naming why not."""
    account_field = f"{prefix}.account" if prefix else "account"
    account = (
        cleaned_or_refused(
            clean_account(account_field, body.account.draft(), context.rules.phone_region)
        )
        if body.account is not None
        else None
    )
    terms = PreferenceTerms(
        provider_id=body.provider_id,
        mechanism=body.mechanism,
        currency=body.currency or context.default_currency,
        pay_point_id=body.pay_point_id,
        account_kind=account.kind if account else None,
    )
    problems = domain.preference_shape_problems(terms)
    if not problems:
        provider = await repository.provider_view(session, body.provider_id)
        problems = domain.provider_problems(terms, provider, location_code)
    if problems:
        raise Problem(
            422,
            "payment-preference-refused",
            "; ".join(problem.message for problem in problems),
            errors=[
                {
                    "field": f"{prefix}.{problem.field}" if prefix else problem.field,
                    "code": problem.reason,
                    "message": problem.message,
                }
                for problem in problems
            ],
        )
    return PaymentPreference(
        provider_id=body.provider_id,
        mechanism=body.mechanism,
        currency=terms.currency,
        pay_point_id=body.pay_point_id,
        account_kind=account.kind if account else None,
        account_value=account.value if account else None,
        bank_code=account.bank_code if account else None,
        holder_name=account.holder_name if account else None,
    )


# --- events ----------------------------------------------------------------------------------


class IdentifierView(Protocol):
    @property
    def scheme(self) -> str: ...
    @property
    def value(self) -> str: ...


class MemberView(Protocol):
    @property
    def id(self) -> UUID: ...
    @property
    def is_head(self) -> bool: ...
    @property
    def is_primary_recipient(self) -> bool: ...
    @property
    def relationship(self) -> str: ...
    @property
    def given_name(self) -> str: ...
    @property
    def family_name(self) -> str: ...
    @property
    def sex(self) -> str: ...
    @property
    def date_of_birth(self) -> date: ...
    @property
    def disability(self) -> bool: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def identifiers(self) -> Sequence[IdentifierView]: ...


class PreferenceView(Protocol):
    @property
    def provider_id(self) -> UUID: ...
    @property
    def mechanism(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def pay_point_id(self) -> UUID | None: ...
    @property
    def account_kind(self) -> str | None: ...
    @property
    def account_value(self) -> str | None: ...
    @property
    def bank_code(self) -> str | None: ...
    @property
    def holder_name(self) -> str | None: ...


class HouseholdView(Protocol):
    """What a snapshot is made of: an ORM household, or the plain rows a bulk import writes."""

    @property
    def id(self) -> UUID: ...
    @property
    def household_number(self) -> str: ...
    @property
    def location_code(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def status_reason(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def eligibility_attributes(self) -> dict[str, Any]: ...
    @property
    def duplicate_review_open(self) -> bool: ...
    @property
    def enrolled_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def version(self) -> int: ...
    @property
    def members(self) -> Sequence[MemberView]: ...
    @property
    def payment_preference(self) -> PreferenceView | None: ...


def snapshot(household: HouseholdView, provider: ProviderView | None) -> dict[str, Any]:
    """The fields of HouseholdSnapshotV1 for this household, with its payability computed from
    the provider as the registry knows it now."""
    preference = household.payment_preference
    terms = (
        PreferenceTerms(
            provider_id=preference.provider_id,
            mechanism=preference.mechanism,
            currency=preference.currency,
            pay_point_id=preference.pay_point_id,
            account_kind=preference.account_kind,
        )
        if preference is not None
        else None
    )
    payable, reasons = domain.payability(
        household.status,
        household.duplicate_review_open,
        terms,
        provider,
        household.location_code,
    )
    return {
        "household_id": household.id,
        "household_number": household.household_number,
        "location_code": household.location_code,
        "status": household.status,
        "status_reason": household.status_reason,
        "enrolled_at": household.enrolled_at.isoformat(),
        "updated_at": household.updated_at,
        "version": household.version,
        "size": len(household.members),
        "members": [
            MemberV1(
                member_id=m.id,
                is_head=m.is_head,
                is_primary_recipient=m.is_primary_recipient,
                relationship=m.relationship,
                sex=m.sex,
                date_of_birth=m.date_of_birth,
                disability=m.disability,
            )
            for m in household.members
        ],
        "eligibility_attributes": household.eligibility_attributes,
        "primary_recipient": _recipient(household),
        "payment_preference": _preference_v1(preference) if preference is not None else None,
        "payable": payable,
        "not_payable_reasons": reasons,
        "duplicate_review_open": household.duplicate_review_open,
    }


def _recipient(household: HouseholdView) -> RecipientV1 | None:
    member = next((m for m in household.members if m.is_primary_recipient), None)
    if member is None:
        return None
    identifiers = sorted(
        member.identifiers,
        key=lambda i: (
            RECIPIENT_IDENTIFIER_ORDER.index(i.scheme)
            if i.scheme in RECIPIENT_IDENTIFIER_ORDER
            else len(RECIPIENT_IDENTIFIER_ORDER),
            i.scheme,
        ),
    )
    return RecipientV1(
        member_id=member.id,
        given_name=member.given_name,
        family_name=member.family_name,
        sex=member.sex,
        date_of_birth=member.date_of_birth,
        identifier=(
            IdentifierV1(scheme=identifiers[0].scheme, value=identifiers[0].value)
            if identifiers
            else None
        ),
        phone=member.phone or household.phone,
    )


def _preference_v1(preference: PreferenceView) -> PaymentPreferenceV1:
    return PaymentPreferenceV1(
        provider_id=preference.provider_id,
        mechanism=preference.mechanism,
        pay_point_id=preference.pay_point_id,
        currency=preference.currency,
        account=(
            AccountV1(
                kind=preference.account_kind,
                value=preference.account_value,
                bank_code=preference.bank_code,
                holder_name=preference.holder_name,
            )
            if preference.account_kind is not None and preference.account_value is not None
            else None
        ),
    )
