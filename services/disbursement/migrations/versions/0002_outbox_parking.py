"""Outbox rows that cannot be published are parked; processed events are pruned by age.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from amana_common.migrations import park_outbox_rows, unpark_outbox_rows

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    park_outbox_rows()


def downgrade() -> None:
    unpark_outbox_rows()
