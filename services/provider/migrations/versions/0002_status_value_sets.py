"""A provider's status is one of its value set; a suspended provider has a reason.

Splits `ck_providers_status` (which mixed the two rules) into `ck_providers_status`, derived
from the ProviderStatus value set as the model derives it, and `ck_providers_status_reason`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

from amana_common.value_sets import one_of

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The value set as it was when this migration was written: a migration is history.
PROVIDER_STATUSES = ("active", "suspended")


def upgrade() -> None:
    op.drop_constraint(op.f("ck_providers_status"), "providers", type_="check")
    op.create_check_constraint(
        op.f("ck_providers_status"), "providers", one_of("status", PROVIDER_STATUSES)
    )
    op.create_check_constraint(
        op.f("ck_providers_status_reason"),
        "providers",
        "status <> 'suspended' OR status_reason IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_providers_status_reason"), "providers", type_="check")
    op.drop_constraint(op.f("ck_providers_status"), "providers", type_="check")
    op.create_check_constraint(
        op.f("ck_providers_status"),
        "providers",
        "status = 'active' OR (status = 'suspended' AND status_reason IS NOT NULL)",
    )
