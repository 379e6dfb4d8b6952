"""Provider accounts, batches, payments, deliveries and their attempts, faults and their
injections; outbox, processed events, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from amana_common.migrations import (
    create_infrastructure_tables,
    drop_infrastructure_tables,
    park_outbox_rows,
    unpark_outbox_rows,
)
from amana_common.value_sets import one_of

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The value sets as they were when this migration was written: a migration is history.
RESULT_STATUSES = ("settled", "failed")
DELIVERY_STATUSES = ("pending", "delivered", "answered", "abandoned")
VERDICTS = ("as_expected", "unexpected")
FAULT_KINDS = (
    "outage",
    "slow",
    "error_500",
    "late_result",
    "amount_mismatch",
    "conflicting_settlement",
    "unknown_payment",
    "duplicate_webhook",
    "duplicate_results",
    "reorder",
    "replay",
    "bad_signature",
    "stale_timestamp",
)


def upgrade() -> None:
    create_infrastructure_tables()
    park_outbox_rows()
    op.create_table(
        "sandbox_providers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("api_key_hash", sa.String(length=64), nullable=False),
        sa.Column("webhook_url", sa.String(length=2048), nullable=False),
        sa.Column("webhook_secret", sa.String(length=200), nullable=False),
        sa.Column("settle_delay_s", sa.Double(), nullable=False),
        sa.Column("failure_rate", sa.Double(), nullable=False),
        sa.Column("reason_mix", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("results_per_webhook", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_providers")),
        sa.UniqueConstraint("api_key_hash", name=op.f("uq_sandbox_providers_api_key_hash")),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_count", sa.Integer(), nullable=False),
        sa.Column("total_amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["sandbox_providers.id"],
            name=op.f("fk_batches_provider_id_sandbox_providers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index(op.f("ix_batches_provider_id"), "batches", ["provider_id"], unique=False)
    op.create_table(
        "faults",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.CheckConstraint(one_of("kind", FAULT_KINDS), name="kind"),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("max_count", sa.Integer(), nullable=True),
        sa.Column("active_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("seen", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("applied", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["sandbox_providers.id"],
            name=op.f("fk_faults_provider_id_sandbox_providers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faults")),
    )
    op.create_index(
        "ix_faults_in_force",
        "faults",
        ["provider_id"],
        unique=False,
        postgresql_where=sa.text("cleared_at IS NULL"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("fault_id", sa.Uuid(), nullable=True),
        sa.Column("faults", postgresql.ARRAY(sa.String(length=30)), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("payment_numbers", postgresql.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("result_count", sa.Integer(), nullable=False),
        sa.Column("signing", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("depends_on", postgresql.ARRAY(sa.UUID()), nullable=False),
        sa.Column("expected", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.CheckConstraint(one_of("status", DELIVERY_STATUSES), name="status"),
        sa.CheckConstraint(one_of("verdict", VERDICTS), name="verdict"),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "sent_headers",
            postgresql.JSONB(none_as_null=True, astext_type=sa.Text()),
            nullable=True,
        ),
        sa.Column(
            "answer_summary",
            postgresql.JSONB(none_as_null=True, astext_type=sa.Text()),
            nullable=True,
        ),
        sa.Column("verdict", sa.String(length=12), nullable=True),
        sa.Column("verdict_detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["fault_id"], ["faults.id"], name=op.f("fk_deliveries_fault_id_faults")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["sandbox_providers.id"],
            name=op.f("fk_deliveries_provider_id_sandbox_providers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    op.create_index(op.f("ix_deliveries_fault_id"), "deliveries", ["fault_id"], unique=False)
    op.create_index(
        "ix_deliveries_faults", "deliveries", ["faults"], unique=False, postgresql_using="gin"
    )
    op.create_index(
        "ix_deliveries_pending",
        "deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(op.f("ix_deliveries_provider_id"), "deliveries", ["provider_id"], unique=False)
    op.create_index(
        "uq_deliveries_genuine_webhook_id",
        "deliveries",
        ["webhook_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'results'"),
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_attempts_delivery_id_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    op.create_index(
        op.f("ix_delivery_attempts_delivery_id"), "delivery_attempts", ["delivery_id"], unique=False
    )
    op.create_table(
        "fault_injections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("fault_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=True),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("payment_number", sa.String(length=64), nullable=True),
        sa.Column("delivery_id", sa.Uuid(), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("injected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_fault_injections_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_fault_injections_delivery_id_deliveries"),
        ),
        sa.ForeignKeyConstraint(
            ["fault_id"], ["faults.id"], name=op.f("fk_fault_injections_fault_id_faults")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["sandbox_providers.id"],
            name=op.f("fk_fault_injections_provider_id_sandbox_providers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fault_injections")),
    )
    op.create_index(
        op.f("ix_fault_injections_fault_id"), "fault_injections", ["fault_id"], unique=False
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("payment_number", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("mechanism", sa.String(length=20), nullable=False),
        sa.Column("pay_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.CheckConstraint(one_of("outcome", RESULT_STATUSES), name="outcome"),
        sa.Column("reason_code", sa.String(length=35), nullable=True),
        sa.Column("provider_reference", sa.String(length=100), nullable=False),
        sa.Column("result_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("late", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_payments_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_payments_delivery_id_deliveries")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["sandbox_providers.id"],
            name=op.f("fk_payments_provider_id_sandbox_providers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("provider_id", "payment_number", name=op.f("uq_payments_provider_id")),
    )
    op.create_index(op.f("ix_payments_batch_id"), "payments", ["batch_id"], unique=False)
    op.create_index(op.f("ix_payments_delivery_id"), "payments", ["delivery_id"], unique=False)
    op.create_index(
        "ix_payments_due",
        "payments",
        ["result_due_at"],
        unique=False,
        postgresql_where=sa.text("delivery_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_payments_due", table_name="payments", postgresql_where=sa.text("delivery_id IS NULL")
    )
    op.drop_index(op.f("ix_payments_delivery_id"), table_name="payments")
    op.drop_index(op.f("ix_payments_batch_id"), table_name="payments")
    op.drop_table("payments")
    op.drop_index(op.f("ix_fault_injections_fault_id"), table_name="fault_injections")
    op.drop_table("fault_injections")
    op.drop_index(op.f("ix_delivery_attempts_delivery_id"), table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    op.drop_index(
        "uq_deliveries_genuine_webhook_id",
        table_name="deliveries",
        postgresql_where=sa.text("kind = 'results'"),
    )
    op.drop_index(op.f("ix_deliveries_provider_id"), table_name="deliveries")
    op.drop_index(
        "ix_deliveries_pending",
        table_name="deliveries",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_deliveries_faults", table_name="deliveries", postgresql_using="gin")
    op.drop_index(op.f("ix_deliveries_fault_id"), table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index(
        "ix_faults_in_force", table_name="faults", postgresql_where=sa.text("cleared_at IS NULL")
    )
    op.drop_table("faults")
    op.drop_index(op.f("ix_batches_provider_id"), table_name="batches")
    op.drop_table("batches")
    op.drop_table("sandbox_providers")
    unpark_outbox_rows()
    drop_infrastructure_tables()
