"""Registry tables: households, members, identifiers, payment preferences and their history.

What the database guarantees by itself, whatever writes to it (API, imports, SQL):

- one head and one primary recipient per household: partial unique indexes refuse a second
  one at once, and deferred constraint triggers (migration 0004) refuse a household left with
  none when its transaction commits;
- an identifier (scheme, value) belongs to one household that has not exited: a partial
  unique index over `member_identifiers`, whose `household_exited` flag (a copy of the
  household's status) is set when the household exits, so exiting frees its identifiers;
- name search keys, kept by PostgreSQL itself: `members.search_name` (given and family name
  folded by `registry_fold`: unaccent + lower) and `members.search_words` (its words, indexed)
  are generated columns; `name_words` holds every word once (statement triggers on members add
  new ones), indexed for trigram search, so that a name search looks up the words near each
  word of the query in a small table, then the members holding them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    orm,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from amana_common.db import new_metadata
from amana_common.value_sets import one_of
from amana_contracts.provider import Mechanism, PayPointStatus, ProviderStatus
from amana_contracts.registry import AccountKind, HouseholdStatus
from registry.matching import FlagSource, FlagStatus, RunStatus

CODE_LENGTH = 32
LOCATION_LENGTH = 50
# `registry_fold` is created by migration 0004: lower(unaccent(text)), declared IMMUTABLE.
SEARCH_NAME = "public.registry_fold(((given_name)::text || ' '::text) || (family_name)::text)"
SEARCH_WORDS = f"string_to_array({SEARCH_NAME}, ' '::text)"
# `registry_match_keys` is created by migration 0006: the duplicate detection's blocking keys.
MATCH_KEYS = "public.registry_match_keys(given_name, family_name, date_of_birth)"


class Base(DeclarativeBase):
    metadata = new_metadata()


class Household(Base):
    __tablename__ = "households"
    __table_args__ = (
        CheckConstraint(one_of("status", HouseholdStatus), name="status"),
        CheckConstraint("(latitude IS NULL) = (longitude IS NULL)", name="gps_pair"),
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude"),
        Index(
            "ix_households_location_code",
            "location_code",
            postgresql_ops={"location_code": "varchar_pattern_ops"},
        ),
        Index("ix_households_updated_at", "updated_at"),
        Index("ix_households_phone", "phone"),
        Index(
            "ix_households_duplicate_review_open",
            "id",
            postgresql_where=text("duplicate_review_open"),
        ),
        Index(
            "ix_households_eligibility_attributes",
            "eligibility_attributes",
            postgresql_using="gin",
            postgresql_ops={"eligibility_attributes": "jsonb_path_ops"},
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    household_number: Mapped[str] = mapped_column(String(20), unique=True)
    location_code: Mapped[str] = mapped_column(String(50))
    status: Mapped[HouseholdStatus] = mapped_column(String(20), index=True)
    status_reason: Mapped[str | None] = mapped_column(String(500))
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    address: Mapped[str | None] = mapped_column(String(500))
    phone: Mapped[str | None] = mapped_column(String(20))
    latitude: Mapped[float | None] = mapped_column(Double)
    longitude: Mapped[float | None] = mapped_column(Double)
    eligibility_attributes: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )
    duplicate_review_open: Mapped[bool] = mapped_column(server_default=text("false"))
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    members: Mapped[list[Member]] = orm.relationship(
        back_populates="household",
        order_by="Member.position",
        lazy="raise",
        cascade="all, delete-orphan",
    )
    payment_preference: Mapped[PaymentPreference | None] = orm.relationship(
        lazy="raise", cascade="all, delete-orphan", uselist=False
    )


class Member(Base):
    # `relationship` is a column here (relationship to the head), hence `orm.relationship` below.
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("household_id", "position"),
        # At most one head and one primary recipient at once; "at least one" is checked by
        # deferred constraint triggers when the transaction commits (migration 0004).
        Index("uq_members_one_head", "household_id", unique=True, postgresql_where=text("is_head")),
        Index(
            "uq_members_one_primary_recipient",
            "household_id",
            unique=True,
            postgresql_where=text("is_primary_recipient"),
        ),
        Index("ix_members_search_words", "search_words", postgresql_using="gin"),
        Index("ix_members_phone", "phone"),
        Index(
            "ix_members_match_keys",
            "match_keys",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    household_id: Mapped[UUID] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(SmallInteger)
    is_head: Mapped[bool]
    is_primary_recipient: Mapped[bool] = mapped_column(server_default=text("false"))
    relationship: Mapped[str] = mapped_column(String(20))
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    sex: Mapped[str] = mapped_column(String(10))
    date_of_birth: Mapped[date] = mapped_column(Date)
    disability: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    phone: Mapped[str | None] = mapped_column(String(20))
    search_name: Mapped[str] = mapped_column(Text, Computed(SEARCH_NAME, persisted=True))
    search_words: Mapped[list[str]] = mapped_column(
        ARRAY(Text), Computed(SEARCH_WORDS, persisted=True)
    )
    match_keys: Mapped[list[str]] = mapped_column(ARRAY(Text), Computed(MATCH_KEYS, persisted=True))

    household: Mapped[Household] = orm.relationship(back_populates="members", lazy="raise")
    identifiers: Mapped[list[MemberIdentifier]] = orm.relationship(
        order_by="MemberIdentifier.scheme", lazy="raise", cascade="all, delete-orphan"
    )


class NameWord(Base):
    """Every folded word of a member's name, once (kept by triggers, never deleted)."""

    __tablename__ = "name_words"
    __table_args__ = (
        Index(
            "ix_name_words_word_trigrams",
            "word",
            postgresql_using="gin",
            postgresql_ops={"word": "public.gin_trgm_ops"},
        ),
    )

    word: Mapped[str] = mapped_column(Text, primary_key=True)


class MemberIdentifier(Base):
    __tablename__ = "member_identifiers"
    __table_args__ = (
        Index(
            "uq_member_identifiers_scheme_value",
            "scheme",
            "value",
            unique=True,
            postgresql_where=text("NOT household_exited"),
        ),
        Index("ix_member_identifiers_value", "value"),
        Index("ix_member_identifiers_household_id", "household_id"),
    )

    member_id: Mapped[UUID] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    scheme: Mapped[str] = mapped_column(String(30), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))
    # Copies of the household's id and of `status = 'exited'`, for the partial unique index.
    household_id: Mapped[UUID] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    household_exited: Mapped[bool] = mapped_column(server_default=text("false"))


class PaymentPreference(Base):
    """How a household wants to be paid. Checked against the provider projection when set;
    kept when the provider later changes, so that the snapshot can say why it is not payable."""

    __tablename__ = "payment_preferences"
    __table_args__ = (
        CheckConstraint(one_of("mechanism", Mechanism), name="mechanism"),
        CheckConstraint(one_of("account_kind", AccountKind), name="account_kind"),
        CheckConstraint("(account_kind IS NULL) = (account_value IS NULL)", name="account_pair"),
        Index("ix_payment_preferences_provider_id", "provider_id"),
    )

    household_id: Mapped[UUID] = mapped_column(
        ForeignKey("households.id", ondelete="CASCADE"), primary_key=True
    )
    provider_id: Mapped[UUID]
    mechanism: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    pay_point_id: Mapped[UUID | None]
    account_kind: Mapped[str | None] = mapped_column(String(20))
    account_value: Mapped[str | None] = mapped_column(String(64))
    bank_code: Mapped[str | None] = mapped_column(String(20))
    holder_name: Mapped[str | None] = mapped_column(String(200))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HouseholdStatusChange(Base):
    __tablename__ = "household_status_changes"
    __table_args__ = (Index("ix_household_status_changes_household_id", "household_id", "id"),)

    id: Mapped[UUID] = mapped_column(primary_key=True)
    household_id: Mapped[UUID] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(500))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    changed_by: Mapped[str | None] = mapped_column(String(200))


class HouseholdChange(Base):
    """Who changed what and when: one row per version of a household, with every field that
    changed (before and after). Personal data: read through the API, never logged."""

    __tablename__ = "household_changes"
    __table_args__ = (UniqueConstraint("household_id", "version"),)

    id: Mapped[UUID] = mapped_column(primary_key=True)
    household_id: Mapped[UUID] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(40))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    changed_by: Mapped[str | None] = mapped_column(String(200))
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)


class ProviderProjection(Base):
    """A payment provider as its latest event says (only a higher `version` replaces it)."""

    __tablename__ = "projected_providers"
    __table_args__ = (CheckConstraint(one_of("status", ProviderStatus), name="status"),)

    provider_id: Mapped[UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE_LENGTH))
    status: Mapped[ProviderStatus] = mapped_column(String(10))
    mechanisms: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
    currencies: Mapped[list[str]] = mapped_column(ARRAY(String(3)))
    service_areas: Mapped[list[str]] = mapped_column(ARRAY(String(LOCATION_LENGTH)))
    version: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PayPointProjection(Base):
    """A provider's pay point, replaced with the provider's snapshot."""

    __tablename__ = "projected_pay_points"
    __table_args__ = (CheckConstraint(one_of("status", PayPointStatus), name="status"),)

    pay_point_id: Mapped[UUID] = mapped_column(primary_key=True)
    provider_id: Mapped[UUID] = mapped_column(
        ForeignKey("projected_providers.provider_id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(CODE_LENGTH))
    status: Mapped[PayPointStatus] = mapped_column(String(10))
    location_codes: Mapped[list[str]] = mapped_column(ARRAY(String(LOCATION_LENGTH)))


# --- imports and exports (README, "Imports" and "FHIR") ---------------------------------------

IMPORT_FORMATS = ("csv", "fhir_ndjson")
JOB_STATUSES = ("queued", "running", "done", "failed")
IMPORT_PHASES = ("stage", "apply")
RECORD_OUTCOMES = ("created", "updated", "rejected", "flagged")


class ImportJob(Base):
    """A bulk import: the upload is kept in `job_blocks`, staged record by record into
    `import_items`, then applied in chunks; `cursor` is the position of the last record whose
    chunk committed, so a worker that resumes the job starts after it."""

    __tablename__ = "import_jobs"
    __table_args__ = (
        CheckConstraint(f"format IN {IMPORT_FORMATS}", name="format"),
        CheckConstraint(f"status IN {JOB_STATUSES}", name="status"),
        CheckConstraint(f"phase IN {IMPORT_PHASES}", name="phase"),
        Index(
            "ix_import_jobs_pending",
            "created_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    format: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10))
    phase: Mapped[str] = mapped_column(String(10))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    blocks: Mapped[int] = mapped_column(Integer)
    staged: Mapped[int] = mapped_column(Integer, server_default="0")
    cursor: Mapped[int] = mapped_column(Integer, server_default="0")
    processed: Mapped[int] = mapped_column(Integer, server_default="0")
    created: Mapped[int] = mapped_column(Integer, server_default="0")
    updated: Mapped[int] = mapped_column(Integer, server_default="0")
    rejected: Mapped[int] = mapped_column(Integer, server_default="0")
    flagged: Mapped[int] = mapped_column(Integer, server_default="0")
    error: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobBlock(Base):
    """The bytes of an upload (`part` 'upload') or of an export's NDJSON files (`part` the
    resource type), in blocks of at most a MiB, in `seq` order."""

    __tablename__ = "job_blocks"

    job_id: Mapped[UUID] = mapped_column(primary_key=True)
    part: Mapped[str] = mapped_column(String(30), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ImportItem(Base):
    """A record of an import, staged: a CSV household (its rows) or one FHIR resource.
    `claimed_by` is the position of the Group that took a Patient or RelatedPerson."""

    __tablename__ = "import_items"
    __table_args__ = (Index("ix_import_items_job_id", "job_id", "kind", "source_id"),)

    job_id: Mapped[UUID] = mapped_column(
        ForeignKey("import_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    source_id: Mapped[str | None] = mapped_column(String(200))
    line: Mapped[int] = mapped_column(Integer)
    body: Mapped[Any] = mapped_column(JSONB)
    claimed_by: Mapped[int | None] = mapped_column(Integer)


class ImportRecord(Base):
    """One line of an import's report: a record's outcome, what the cleaning changed and why
    it was refused or flagged (fields named). Personal data (before/after values)."""

    __tablename__ = "import_report"
    __table_args__ = (CheckConstraint(f"outcome IN {RECORD_OUTCOMES}", name="outcome"),)

    job_id: Mapped[UUID] = mapped_column(
        ForeignKey("import_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    line: Mapped[int] = mapped_column(Integer)
    source_id: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(10))
    household_id: Mapped[UUID | None]
    duplicate_flagged: Mapped[bool] = mapped_column(server_default=text("false"))
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)


class HouseholdSource(Base):
    """How another system names a household: a key (`Group/<id>`, `<system>|<value>` of a
    Group identifier, `code:<household_code>`) within a source; a re-import matches on it."""

    __tablename__ = "household_sources"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    source_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    household_id: Mapped[UUID] = mapped_column(
        ForeignKey("households.id", ondelete="CASCADE"), index=True
    )


class ExportJob(Base):
    """A FHIR bulk export ($export): NDJSON files per resource type in `job_blocks`."""

    __tablename__ = "export_jobs"
    __table_args__ = (CheckConstraint(f"status IN {JOB_STATUSES}", name="status"),)

    id: Mapped[UUID] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(10))
    types: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    request_url: Mapped[str] = mapped_column(String(2000))
    counts: Mapped[dict[str, int]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    error: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    transaction_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DuplicateFlag(Base):
    """Two households that may be one: one row per pair, ever (`household_id` the older by id),
    so that a `not_duplicate` decision is remembered. `comparison` says which fields agreed
    and how (member ids and agreement levels, never names); `reasons` is its short form."""

    __tablename__ = "duplicate_flags"
    __table_args__ = (
        CheckConstraint(one_of("status", FlagStatus), name="status"),
        CheckConstraint(one_of("source", FlagSource), name="source"),
        CheckConstraint("household_id < other_household_id", name="ordered_pair"),
        CheckConstraint("score BETWEEN 0 AND 1", name="score"),
        UniqueConstraint("household_id", "other_household_id"),
        Index("ix_duplicate_flags_open", "id", postgresql_where=text("status = 'open'")),
        Index("ix_duplicate_flags_other_household_id", "other_household_id"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    household_id: Mapped[UUID] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    other_household_id: Mapped[UUID] = mapped_column(
        ForeignKey("households.id", ondelete="CASCADE")
    )
    status: Mapped[FlagStatus] = mapped_column(String(20))
    score: Mapped[float] = mapped_column(Double)
    weight: Mapped[float] = mapped_column(Double)
    reasons: Mapped[list[str]] = mapped_column(ARRAY(String(200)))
    comparison: Mapped[dict[str, Any]] = mapped_column(JSONB)
    location_code: Mapped[str] = mapped_column(String(LOCATION_LENGTH))
    source: Mapped[FlagSource] = mapped_column(String(20))
    flagged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    flagged_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(String(500))
    surviving_household_id: Mapped[UUID | None]
    version: Mapped[int] = mapped_column(default=1, server_default="1")


class DuplicateRun(Base):
    """A batch duplicate detection over the whole registry, with its progress."""

    __tablename__ = "duplicate_runs"
    __table_args__ = (
        CheckConstraint(one_of("status", RunStatus), name="status"),
        Index(
            "ix_duplicate_runs_unfinished",
            "requested_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    status: Mapped[RunStatus] = mapped_column(String(10))
    requested_by: Mapped[str | None] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    phase: Mapped[str | None] = mapped_column(String(20))
    pairs_total: Mapped[int] = mapped_column(BigInteger, server_default="0")
    pairs_scored: Mapped[int] = mapped_column(BigInteger, server_default="0")
    flags_created: Mapped[int] = mapped_column(BigInteger, server_default="0")
    blocks_skipped: Mapped[int] = mapped_column(BigInteger, server_default="0")
    error: Mapped[str | None] = mapped_column(String(500))
