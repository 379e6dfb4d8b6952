"""Duplicate detection and review: members' blocking keys (phonetic codes with the date or year
of birth), duplicate flags (one row per pair of households, ever: a `not_duplicate` decision
is remembered) and batch runs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from amana_common.value_sets import one_of

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The value sets as they were when this migration was written: a migration is history.
FLAG_STATUSES = ("open", "not_duplicate", "duplicate_merged", "duplicate_exited", "resolved")
FLAG_SOURCES = ("enrolment", "update", "import", "batch")
RUN_STATUSES = ("queued", "running", "done", "failed")

# A member's blocking keys, from the Double Metaphone codes (fuzzystrmatch) of the words of
# its folded name: `b19790411:ANJR+KM` (the date of birth with a pair of codes: names and date
# intact, in any order), `d19790411:ANJR` (the date of birth with one code: the other name
# changed) and `y1979:ANJR+KM` (the year of birth with a pair: the date a day or a month off).
# Blocking uses `b` keys as they are and the others within the household's area (README,
# "Duplicate detection"). IMMUTABLE (dmetaphone and registry_fold are), for a generated column.
MATCH_KEYS_FUNCTION = """
CREATE FUNCTION registry_match_keys(given text, family text, born date) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$
    WITH codes AS (
        SELECT DISTINCT public.dmetaphone(word) AS code
        FROM unnest(string_to_array(public.registry_fold(given || ' ' || family), ' ')) AS word
        WHERE length(word) > 1
    ), named AS (SELECT code FROM codes WHERE code <> ''),
    pairs AS (SELECT a.code || '+' || b.code AS pair FROM named a JOIN named b ON a.code < b.code)
    SELECT coalesce(array_agg(key ORDER BY key), '{}') FROM (
        SELECT 'b' || to_char(born, 'YYYYMMDD') || ':' || pair AS key FROM pairs
        UNION ALL
        SELECT 'd' || to_char(born, 'YYYYMMDD') || ':' || code FROM named
        UNION ALL
        SELECT 'y' || to_char(born, 'YYYY') || ':' || pair FROM pairs
    ) keys
$$
"""
MATCH_KEYS = "public.registry_match_keys(given_name, family_name, date_of_birth)"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS fuzzystrmatch WITH SCHEMA public")
    op.execute(MATCH_KEYS_FUNCTION)
    op.add_column(
        "members",
        sa.Column(
            "match_keys",
            ARRAY(sa.Text),
            sa.Computed(MATCH_KEYS, persisted=True),
            nullable=False,
        ),
    )
    # No fast update: a pending list (which every lookup scans) would grow with each
    # enrolment, and with each rolled-back one, until a vacuum; a check must stay fast.
    op.create_index(
        "ix_members_match_keys",
        "members",
        ["match_keys"],
        postgresql_using="gin",
        postgresql_with={"fastupdate": "off"},
    )
    _flags()
    _runs()


def _flags() -> None:
    household = sa.ForeignKey("households.id", ondelete="CASCADE")
    op.create_table(
        "duplicate_flags",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("household_id", UUID(as_uuid=True), household, nullable=False),
        sa.Column(
            "other_household_id",
            UUID(as_uuid=True),
            sa.ForeignKey("households.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("score", sa.Double, nullable=False),
        sa.Column("weight", sa.Double, nullable=False),
        sa.Column("reasons", ARRAY(sa.String(200)), nullable=False),
        sa.Column("comparison", JSONB, nullable=False),
        sa.Column("location_code", sa.String(50), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flagged_by", sa.String(200)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("note", sa.String(500)),
        sa.Column("surviving_household_id", UUID(as_uuid=True)),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.CheckConstraint(one_of("status", FLAG_STATUSES), name="status"),
        sa.CheckConstraint(one_of("source", FLAG_SOURCES), name="source"),
        sa.CheckConstraint("household_id < other_household_id", name="ordered_pair"),
        sa.CheckConstraint("score BETWEEN 0 AND 1", name="score"),
        sa.UniqueConstraint(
            "household_id", "other_household_id", name="uq_duplicate_flags_household_id"
        ),
    )
    op.create_index(
        "ix_duplicate_flags_open",
        "duplicate_flags",
        ["id"],
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_duplicate_flags_other_household_id", "duplicate_flags", ["other_household_id"]
    )


def _runs() -> None:
    op.create_table(
        "duplicate_runs",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("requested_by", sa.String(200)),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("phase", sa.String(20)),
        sa.Column("pairs_total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("pairs_scored", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("flags_created", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("blocks_skipped", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("error", sa.String(500)),
        sa.CheckConstraint(one_of("status", RUN_STATUSES), name="status"),
    )
    op.create_index(
        "ix_duplicate_runs_unfinished",
        "duplicate_runs",
        ["requested_at"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_table("duplicate_runs")
    op.drop_table("duplicate_flags")
    op.drop_index("ix_members_match_keys", "members")
    op.drop_column("members", "match_keys")
    op.execute("DROP FUNCTION registry_match_keys(text, text, date)")
