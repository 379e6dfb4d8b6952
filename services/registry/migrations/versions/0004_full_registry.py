"""The full household registry: status with reason and history, GPS, eligibility attributes,
primary recipient, identifiers unique among households that have not exited, payment
preferences, change history, and the name search key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# lower(unaccent(x)), IMMUTABLE so that a generated column and an index may use it. unaccent()
# itself is only STABLE because its dictionary could change; naming the dictionary pins it.
FOLD_FUNCTION = """
CREATE FUNCTION registry_fold(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1)) $$
"""

# Exactly one head and one primary recipient: the unique indexes refuse a second one at once;
# this refuses a household left with none, when its transaction commits (so a change made in
# several statements, such as moving the head, is checked once it is whole).
ROLES_FUNCTION = """
CREATE FUNCTION registry_check_household_roles() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    target uuid;
    heads int;
    recipients int;
BEGIN
    IF TG_TABLE_NAME = 'households' THEN
        target := NEW.id;
    ELSE
        target := OLD.household_id;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM households WHERE id = target) THEN
        RETURN NULL;  -- the household itself was deleted
    END IF;
    SELECT count(*) FILTER (WHERE is_head), count(*) FILTER (WHERE is_primary_recipient)
      INTO heads, recipients FROM members WHERE household_id = target;
    IF heads <> 1 OR recipients <> 1 THEN
        RAISE EXCEPTION 'household % has % heads and % primary recipients; it needs one of each',
            target, heads, recipients
            USING ERRCODE = 'check_violation', CONSTRAINT = 'registry_household_roles';
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public")
    op.execute(FOLD_FUNCTION)
    _households()
    _members()
    _name_words()
    _identifiers()
    _payment_preferences()
    _history()
    op.execute(ROLES_FUNCTION)
    op.execute(
        "CREATE CONSTRAINT TRIGGER registry_household_roles_on_households "
        "AFTER INSERT ON households DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION registry_check_household_roles()"
    )
    op.execute(
        "CREATE CONSTRAINT TRIGGER registry_household_roles_on_members "
        "AFTER UPDATE OF is_head, is_primary_recipient OR DELETE ON members "
        "DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION registry_check_household_roles()"
    )


def _households() -> None:
    op.add_column("households", sa.Column("status_reason", sa.String(500)))
    op.add_column("households", sa.Column("status_changed_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE households SET status_changed_at = enrolled_at")
    op.alter_column("households", "status_changed_at", nullable=False)
    op.add_column("households", sa.Column("latitude", sa.Double))
    op.add_column("households", sa.Column("longitude", sa.Double))
    op.add_column(
        "households",
        sa.Column(
            "eligibility_attributes", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
    )
    op.add_column(
        "households",
        sa.Column(
            "duplicate_review_open", sa.Boolean, nullable=False, server_default=sa.text("false")
        ),
    )
    op.create_check_constraint("gps_pair", "households", "(latitude IS NULL) = (longitude IS NULL)")
    op.create_check_constraint("latitude", "households", "latitude BETWEEN -90 AND 90")
    op.create_check_constraint("longitude", "households", "longitude BETWEEN -180 AND 180")
    # Location filters are by prefix (an area and everything below it): a pattern index.
    op.drop_index("ix_households_location_code", "households")
    op.create_index(
        "ix_households_location_code",
        "households",
        ["location_code"],
        postgresql_ops={"location_code": "varchar_pattern_ops"},
    )
    op.create_index("ix_households_updated_at", "households", ["updated_at"])
    op.create_index("ix_households_phone", "households", ["phone"])
    op.create_index(
        "ix_households_duplicate_review_open",
        "households",
        ["id"],
        postgresql_where=sa.text("duplicate_review_open"),
    )
    op.create_index(
        "ix_households_eligibility_attributes",
        "households",
        ["eligibility_attributes"],
        postgresql_using="gin",
        postgresql_ops={"eligibility_attributes": "jsonb_path_ops"},
    )


def _members() -> None:
    op.add_column(
        "members",
        sa.Column(
            "is_primary_recipient", sa.Boolean, nullable=False, server_default=sa.text("false")
        ),
    )
    op.execute("UPDATE members SET is_primary_recipient = is_head")
    op.create_index(
        "uq_members_one_primary_recipient",
        "members",
        ["household_id"],
        unique=True,
        postgresql_where=sa.text("is_primary_recipient"),
    )
    op.alter_column("members", "disability", server_default=sa.text("false"))
    op.add_column("members", sa.Column("phone", sa.String(20)))
    op.create_index("ix_members_phone", "members", ["phone"])
    op.add_column(
        "members",
        sa.Column(
            "search_name",
            sa.Text,
            sa.Computed(
                "public.registry_fold(given_name::text || ' ' || family_name::text)",
                persisted=True,
            ),
            nullable=False,
        ),
    )
    op.add_column(
        "members",
        sa.Column(
            "search_words",
            ARRAY(sa.Text),
            sa.Computed(
                "string_to_array(public.registry_fold(given_name::text || ' ' || "
                "family_name::text), ' ')",
                persisted=True,
            ),
            nullable=False,
        ),
    )
    op.create_index("ix_members_search_words", "members", ["search_words"], postgresql_using="gin")


# Every word of a member's name, once, for the name search (statement triggers: set-based even
# under COPY; words in order, so that two transactions adding the same words cannot deadlock).
NAME_WORDS_FUNCTION = """
CREATE FUNCTION registry_add_name_words() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO name_words (word)
    SELECT DISTINCT word FROM new_members, unnest(new_members.search_words) AS word
    ORDER BY word
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$
"""


def _name_words() -> None:
    op.create_table("name_words", sa.Column("word", sa.Text, primary_key=True))
    op.create_index(
        "ix_name_words_word_trigrams",
        "name_words",
        ["word"],
        postgresql_using="gin",
        postgresql_ops={"word": "gin_trgm_ops"},
    )
    op.execute("INSERT INTO name_words (word) SELECT DISTINCT unnest(search_words) FROM members")
    op.execute(NAME_WORDS_FUNCTION)
    for event in ("INSERT", "UPDATE"):
        op.execute(
            f"CREATE TRIGGER registry_name_words_on_{event.lower()} AFTER {event} ON members "
            "REFERENCING NEW TABLE AS new_members FOR EACH STATEMENT "
            "EXECUTE FUNCTION registry_add_name_words()"
        )


def _identifiers() -> None:
    op.add_column("member_identifiers", sa.Column("household_id", UUID(as_uuid=True)))
    op.add_column(
        "member_identifiers",
        sa.Column("household_exited", sa.Boolean, nullable=False, server_default=sa.text("false")),
    )
    op.execute(
        "UPDATE member_identifiers i SET household_id = m.household_id, "
        "household_exited = (h.status = 'exited') "
        "FROM members m JOIN households h ON h.id = m.household_id WHERE m.id = i.member_id"
    )
    op.alter_column("member_identifiers", "household_id", nullable=False)
    op.create_foreign_key(
        "fk_member_identifiers_household_id_households",
        "member_identifiers",
        "households",
        ["household_id"],
        ["id"],
        ondelete="CASCADE",
    )
    _refuse_duplicated_identifiers()
    op.drop_index("ix_member_identifiers_scheme", "member_identifiers")
    op.create_index(
        "uq_member_identifiers_scheme_value",
        "member_identifiers",
        ["scheme", "value"],
        unique=True,
        postgresql_where=sa.text("NOT household_exited"),
    )
    op.create_index("ix_member_identifiers_value", "member_identifiers", ["value"])
    op.create_index("ix_member_identifiers_household_id", "member_identifiers", ["household_id"])


LIST_CLASHES = (
    "SELECT scheme, value, array_agg(household_id) FROM member_identifiers "
    "WHERE NOT household_exited GROUP BY scheme, value HAVING count(*) > 1"
)


def _refuse_duplicated_identifiers() -> None:
    """Before this migration one identifier could be enrolled twice. The unique index cannot be
    built over such rows, and which household keeps the identifier is a person's decision:
    stop with the count (no values: they are personal data) and the query that lists them."""
    clashes = op.get_bind().scalar(
        sa.text(
            "SELECT count(*) FROM (SELECT scheme, value FROM member_identifiers "
            "WHERE NOT household_exited GROUP BY scheme, value HAVING count(*) > 1) clashes"
        )
    )
    if clashes:
        raise RuntimeError(
            f"{clashes} identifiers are held by more than one household that has not exited. "
            f"List them with: {LIST_CLASHES}; correct or exit the duplicates, then migrate again."
        )


def _payment_preferences() -> None:
    op.create_table(
        "payment_preferences",
        sa.Column(
            "household_id",
            UUID(as_uuid=True),
            sa.ForeignKey(
                "households.id",
                ondelete="CASCADE",
                name="fk_payment_preferences_household_id_households",
            ),
            primary_key=True,
        ),
        sa.Column("provider_id", UUID(as_uuid=True), nullable=False),
        sa.Column("mechanism", sa.String(20), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("pay_point_id", UUID(as_uuid=True)),
        sa.Column("account_kind", sa.String(20)),
        sa.Column("account_value", sa.String(64)),
        sa.Column("bank_code", sa.String(20)),
        sa.Column("holder_name", sa.String(200)),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "mechanism IN ('mobile_money', 'bank_transfer', 'cash_pay_point', 'prepaid_card', "
            "'voucher')",
            name="mechanism",
        ),
        sa.CheckConstraint(
            "account_kind IN ('msisdn', 'iban', 'bank_account', 'card', 'voucher')",
            name="account_kind",
        ),
        sa.CheckConstraint("(account_kind IS NULL) = (account_value IS NULL)", name="account_pair"),
    )
    op.create_index("ix_payment_preferences_provider_id", "payment_preferences", ["provider_id"])


def _history() -> None:
    household_fk = sa.ForeignKey("households.id", ondelete="CASCADE")
    op.create_table(
        "household_status_changes",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("household_id", UUID(as_uuid=True), household_fk, nullable=False),
        sa.Column("from_status", sa.String(20)),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(200)),
    )
    op.create_index(
        "ix_household_status_changes_household_id",
        "household_status_changes",
        ["household_id", "id"],
    )
    op.create_table(
        "household_changes",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "household_id",
            UUID(as_uuid=True),
            sa.ForeignKey("households.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(200)),
        sa.Column("changes", JSONB, nullable=False),
        sa.UniqueConstraint("household_id", "version", name="uq_household_changes_household_id"),
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER registry_household_roles_on_members ON members")
    op.execute("DROP TRIGGER registry_household_roles_on_households ON households")
    op.execute("DROP FUNCTION registry_check_household_roles()")
    op.execute("DROP TRIGGER registry_name_words_on_insert ON members")
    op.execute("DROP TRIGGER registry_name_words_on_update ON members")
    op.execute("DROP FUNCTION registry_add_name_words()")
    op.drop_table("name_words")
    op.drop_table("household_changes")
    op.drop_table("household_status_changes")
    op.drop_table("payment_preferences")
    op.drop_index("ix_member_identifiers_household_id", "member_identifiers")
    op.drop_index("ix_member_identifiers_value", "member_identifiers")
    op.drop_index("uq_member_identifiers_scheme_value", "member_identifiers")
    op.create_index("ix_member_identifiers_scheme", "member_identifiers", ["scheme", "value"])
    op.drop_column("member_identifiers", "household_exited")
    op.drop_column("member_identifiers", "household_id")
    op.drop_index("ix_members_search_words", "members")
    op.drop_column("members", "search_words")
    op.drop_column("members", "search_name")
    op.drop_index("ix_members_phone", "members")
    op.drop_column("members", "phone")
    op.drop_index("uq_members_one_primary_recipient", "members")
    op.drop_column("members", "is_primary_recipient")
    for index in (
        "ix_households_eligibility_attributes",
        "ix_households_duplicate_review_open",
        "ix_households_phone",
        "ix_households_updated_at",
        "ix_households_location_code",
    ):
        op.drop_index(index, "households")
    op.create_index("ix_households_location_code", "households", ["location_code"])
    for constraint in (
        "ck_households_longitude",
        "ck_households_latitude",
        "ck_households_gps_pair",
    ):
        op.drop_constraint(op.f(constraint), "households", type_="check")
    for column in (
        "duplicate_review_open",
        "eligibility_attributes",
        "longitude",
        "latitude",
        "status_changed_at",
        "status_reason",
    ):
        op.drop_column("households", column)
    op.execute("DROP FUNCTION registry_fold(text)")
