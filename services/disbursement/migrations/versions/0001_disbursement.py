"""Payrolls and their staged chunks, payments, batches, provider projection and channel
secrets, webhook messages, statements, reconciliation exceptions; the infrastructure tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from amana_common.migrations import create_infrastructure_tables, drop_infrastructure_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# domain.payment_number in SQL, so that a release numbers a million payments in one statement:
# 'P', ten digits, and ISO 7064 Mod 97-10 check digits over both ('P' reads as 25).
# A test checks it against python-stdnum.
PAYMENT_NUMBER_FUNCTION = """
CREATE FUNCTION payment_number(sequence bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT 'P' || lpad(sequence::text, 10, '0') || lpad(
    ((98 - (('25' || lpad(sequence::text, 10, '0'))::numeric * 100 % 97)) % 97)::text, 2, '0')
$$
"""

# A version 7 UUID (RFC 9562): 48 bits of Unix milliseconds over a random UUID's bytes, so
# that rows created together sit together in their indexes.
UUID7_FUNCTION = """
CREATE FUNCTION uuid7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
    substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
    FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$
"""


def _uuid(name: str, *args: object, nullable: bool = False, **kwargs: object) -> sa.Column[object]:
    return sa.Column(name, UUID(as_uuid=True), *args, nullable=nullable, **kwargs)  # type: ignore[arg-type]


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.String(length), nullable=nullable)


def _int(name: str, big: bool = False, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.BigInteger if big else sa.Integer, nullable=nullable)


def upgrade() -> None:
    create_infrastructure_tables()
    op.execute(PAYMENT_NUMBER_FUNCTION)
    op.execute(UUID7_FUNCTION)
    op.execute("CREATE SEQUENCE payment_number_seq AS bigint MAXVALUE 9999999999 CACHE 1000")
    op.create_table(
        "providers",
        _uuid("id", primary_key=True),
        _text("code", 32),
        _text("status", 10),
        sa.Column("currencies", ARRAY(sa.String(3)), nullable=False),
        _text("delivery_mode", 4),
        _text("base_url", 2048, nullable=True),
        sa.Column("file_profile", JSONB),
        _text("fee_currency", 3),
        _int("fee_fixed_minor", big=True),
        _int("fee_basis_points"),
        sa.Column("pay_point_codes", JSONB, nullable=False),
        _int("version"),
        _time("updated_at"),
    )
    op.create_table(
        "provider_channels",
        _uuid("provider_id", primary_key=True),
        sa.Column("api_credential", sa.LargeBinary),
        _time("updated_at"),
        _text("updated_by", 200, nullable=True),
    )
    op.create_table(
        "webhook_secrets",
        _uuid("id", primary_key=True),
        _uuid("provider_id"),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        _time("created_at"),
        _text("created_by", 200, nullable=True),
        _time("expires_at", nullable=True),
    )
    op.create_index("ix_webhook_secrets_provider_id", "webhook_secrets", ["provider_id"])
    op.create_table(
        "webhook_messages",
        _uuid("provider_id"),
        _text("webhook_id", 200),
        _text("body_sha256", 64),
        _time("received_at"),
        sa.Column("answer", JSONB),
        sa.PrimaryKeyConstraint("provider_id", "webhook_id", name="pk_webhook_messages"),
    )
    op.create_index("ix_webhook_messages_received_at", "webhook_messages", ["received_at"])
    op.create_table(
        "payrolls",
        _uuid("id", primary_key=True),
        _uuid("programme_id"),
        _text("programme_code", 100),
        _uuid("cycle_id"),
        _text("currency", 3),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("payment_window_start", sa.Date, nullable=False),
        sa.Column("payment_window_end", sa.Date, nullable=False),
        _time("pay_by"),
        _time("approved_at"),
        _text("approved_by", 200),
        _int("line_count"),
        _int("total_amount_minor", big=True),
        _int("chunk_count"),
        _text("header_sha256", 64),
        _text("status", 12),
        _text("hold_reason", 500, nullable=True),
        _time("received_at"),
        _time("released_at", nullable=True),
        _time("reconciled_at", nullable=True),
        sa.CheckConstraint(
            "status IN ('staging', 'held', 'released', 'reconciled')", name="status"
        ),
    )
    op.create_index("ix_payrolls_status", "payrolls", ["status"])
    op.create_table(
        "payroll_chunks",
        _uuid(
            "payroll_id",
            sa.ForeignKey(
                "payrolls.id", name="fk_payroll_chunks_payroll_id_payrolls", ondelete="CASCADE"
            ),
        ),
        _int("chunk_index"),
        _text("content_sha256", 64),
        _int("line_count"),
        _int("amount_minor", big=True),
        sa.Column("lines", JSONB, nullable=False),
        _time("received_at"),
        sa.PrimaryKeyConstraint("payroll_id", "chunk_index", name="pk_payroll_chunks"),
    )
    op.create_table(
        "batches",
        _uuid("id", primary_key=True),
        _uuid("payroll_id", sa.ForeignKey("payrolls.id", name="fk_batches_payroll_id_payrolls")),
        _uuid("provider_id"),
        _text("currency", 3),
        _int("sequence"),
        _int("payment_count"),
        _int("total_amount_minor", big=True),
        _text("status", 10),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _text("last_error", 500, nullable=True),
        _time("next_attempt_at"),
        _time("sent_at", nullable=True),
        _text("downloaded_by", 200, nullable=True),
        _time("downloaded_at", nullable=True),
        _time("created_at"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.UniqueConstraint("payroll_id", "provider_id", "sequence", name="uq_batches_payroll_id"),
        sa.CheckConstraint("status IN ('ready', 'sent', 'stalled')", name="status"),
    )
    op.create_index("ix_batches_provider_id", "batches", ["provider_id"])
    op.create_index(
        "ix_batches_due", "batches", ["next_attempt_at"], postgresql_where="status = 'ready'"
    )
    op.create_table(
        "provider_breakers",
        _uuid("provider_id", primary_key=True),
        _text("state", 10),
        _int("consecutive_failures"),
        _time("opened_at", nullable=True),
    )
    _create_payments()
    op.create_table(
        "reconciliation_exceptions",
        _uuid("id", primary_key=True),
        _uuid("provider_id"),
        _uuid("payroll_id", nullable=True),
        _uuid("payment_id", nullable=True),
        _text("payment_number", 100),
        _text("kind", 30),
        _text("detail", 500),
        _text("source", 10),
        _text("source_id", 200),
        _text("result_status", 10),
        _int("amount_minor", big=True),
        _text("currency", 3),
        _text("provider_reference", 100),
        _text("reason_code", 35, nullable=True),
        _time("occurred_at"),
        _time("created_at"),
    )
    op.create_index(
        "ix_reconciliation_exceptions_provider_id", "reconciliation_exceptions", ["provider_id"]
    )
    op.create_index(
        "ix_reconciliation_exceptions_payroll_id", "reconciliation_exceptions", ["payroll_id"]
    )
    op.create_table(
        "statements",
        _uuid("id", primary_key=True),
        _uuid("provider_id"),
        _text("format", 10),
        _text("content_sha256", 64),
        _text("uploaded_by", 200),
        _time("uploaded_at"),
        _int("line_count"),
        _int("applied"),
        _int("duplicates"),
        _int("exceptions"),
        sa.UniqueConstraint("provider_id", "content_sha256", name="uq_statements_provider_id"),
    )


def _create_payments() -> None:
    op.create_table(
        "payments",
        _uuid("id", primary_key=True),
        _text("number", 13),
        _uuid("payroll_id", sa.ForeignKey("payrolls.id", name="fk_payments_payroll_id_payrolls")),
        _uuid("payroll_line_id"),
        _uuid("programme_id"),
        _uuid("cycle_id"),
        _uuid("household_id"),
        _text("household_number", 32),
        _text("location_code", 50),
        _uuid("recipient_member_id"),
        _text("recipient_given_name", 200),
        _text("recipient_family_name", 200),
        _text("recipient_sex", 10),
        _text("recipient_age_band", 8),
        sa.Column("recipient_identifier", JSONB),
        _text("recipient_phone", 20, nullable=True),
        _uuid("provider_id"),
        _text("mechanism", 20),
        _uuid("pay_point_id", nullable=True),
        sa.Column("account", JSONB),
        _text("currency", 3),
        _int("amount_minor", big=True),
        _uuid("carried_over_payment_id", nullable=True),
        _uuid("batch_id", sa.ForeignKey("batches.id", name="fk_payments_batch_id_batches")),
        _text("status", 10),
        _time("status_changed_at"),
        _time("pay_by"),
        _text("provider_reference", 100, nullable=True),
        _text("reason_code", 8, nullable=True),
        sa.Column("fee_minor", sa.BigInteger, nullable=False, server_default="0"),
        _time("settled_at", nullable=True),
        _time("failed_at", nullable=True),
        _time("reversed_at", nullable=True),
        _time("created_at"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.UniqueConstraint("number", name="uq_payments_number"),
        sa.UniqueConstraint("payroll_line_id", name="uq_payments_payroll_line_id"),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'settled', 'failed', 'expired', 'reversed')",
            name="status",
        ),
        sa.CheckConstraint("amount_minor > 0 AND fee_minor >= 0", name="amounts"),
    )
    op.create_index("ix_payments_batch_id", "payments", ["batch_id"])
    op.create_index("ix_payments_payroll_id_status", "payments", ["payroll_id", "status"])
    op.create_index(
        "ix_payments_open_pay_by",
        "payments",
        ["pay_by"],
        postgresql_where="status IN ('pending', 'sent')",
    )


def downgrade() -> None:
    for table in (
        "statements",
        "reconciliation_exceptions",
        "payments",
        "provider_breakers",
        "batches",
        "payroll_chunks",
        "payrolls",
        "webhook_messages",
        "webhook_secrets",
        "provider_channels",
        "providers",
    ):
        op.drop_table(table)
    op.execute("DROP SEQUENCE payment_number_seq")
    op.execute("DROP FUNCTION uuid7()")
    op.execute("DROP FUNCTION payment_number(bigint)")
    drop_infrastructure_tables()
