"""Bulk imports (jobs, uploaded blocks, staged records, per-record report), the keys other
systems give households, and FHIR bulk exports.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The value sets as they were when this migration was written: a migration is history.
IMPORT_FORMATS = ("csv", "fhir_ndjson")
JOB_STATUSES = ("queued", "running", "done", "failed")
IMPORT_PHASES = ("stage", "apply")
RECORD_OUTCOMES = ("created", "updated", "rejected", "flagged")


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def _timestamp(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("phase", sa.String(10), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("blocks", sa.Integer(), nullable=False),
        _counter("staged"),
        _counter("cursor"),
        _counter("processed"),
        _counter("created"),
        _counter("updated"),
        _counter("rejected"),
        _counter("flagged"),
        sa.Column("error", sa.String(500)),
        sa.Column("created_by", sa.String(200)),
        _timestamp("created_at", nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at"),
        sa.Column("lease_owner", sa.String(100)),
        _timestamp("lease_until"),
        sa.CheckConstraint(f"format IN {IMPORT_FORMATS}", name="format"),
        sa.CheckConstraint(f"status IN {JOB_STATUSES}", name="status"),
        sa.CheckConstraint(f"phase IN {IMPORT_PHASES}", name="phase"),
    )
    op.create_index(
        "ix_import_jobs_pending",
        "import_jobs",
        ["created_at"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_table(
        "job_blocks",
        sa.Column("job_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("part", sa.String(30), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "import_items",
        sa.Column(
            "job_id",
            UUID(as_uuid=True),
            sa.ForeignKey("import_jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("source_id", sa.String(200)),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("body", JSONB(), nullable=False),
        sa.Column("claimed_by", sa.Integer()),
    )
    op.create_index("ix_import_items_job_id", "import_items", ["job_id", "kind", "source_id"])
    op.create_table(
        "import_report",
        sa.Column(
            "job_id",
            UUID(as_uuid=True),
            sa.ForeignKey("import_jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.String(200)),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("household_id", UUID(as_uuid=True)),
        sa.Column(
            "duplicate_flagged", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("errors", JSONB(), nullable=False),
        sa.Column("changes", JSONB(), nullable=False),
        sa.CheckConstraint(f"outcome IN {RECORD_OUTCOMES}", name="outcome"),
    )
    op.create_table(
        "household_sources",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("source_key", sa.String(300), primary_key=True),
        sa.Column(
            "household_id",
            UUID(as_uuid=True),
            sa.ForeignKey("households.id", ondelete="CASCADE"),
            nullable=False,
        ),
    )
    op.create_index("ix_household_sources_household_id", "household_sources", ["household_id"])
    op.create_table(
        "export_jobs",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("types", ARRAY(sa.String(20)), nullable=False),
        _timestamp("since"),
        sa.Column("request_url", sa.String(2000), nullable=False),
        sa.Column("counts", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("error", sa.String(500)),
        sa.Column("created_by", sa.String(200)),
        _timestamp("created_at", nullable=False),
        _timestamp("transaction_time"),
        _timestamp("finished_at"),
        sa.Column("lease_owner", sa.String(100)),
        _timestamp("lease_until"),
        sa.CheckConstraint(f"status IN {JOB_STATUSES}", name="status"),
    )


def downgrade() -> None:
    for table in ("export_jobs", "household_sources", "import_report", "import_items"):
        op.drop_table(table)
    op.drop_table("job_blocks")
    op.drop_table("import_jobs")
