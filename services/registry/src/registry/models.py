"""Registry tables: the household, its members and their identifiers; and the projection of
the payment providers (from provider events) against which payment preferences are checked."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    false,
    orm,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from amana_common.db import new_metadata
from amana_common.value_sets import one_of
from amana_contracts.provider import PayPointStatus, ProviderStatus
from amana_contracts.registry import HouseholdStatus

CODE_LENGTH = 32
LOCATION_LENGTH = 50


class Base(DeclarativeBase):
    metadata = new_metadata()


class Household(Base):
    __tablename__ = "households"
    __table_args__ = (CheckConstraint(one_of("status", HouseholdStatus), name="status"),)

    id: Mapped[UUID] = mapped_column(primary_key=True)
    household_number: Mapped[str] = mapped_column(String(20), unique=True)
    location_code: Mapped[str] = mapped_column(String(50), index=True)
    status: Mapped[HouseholdStatus] = mapped_column(String(20), index=True)
    address: Mapped[str | None] = mapped_column(String(500))
    phone: Mapped[str | None] = mapped_column(String(20))
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    members: Mapped[list[Member]] = orm.relationship(
        back_populates="household",
        order_by="Member.position",
        lazy="raise",
        cascade="all, delete-orphan",
    )


class Member(Base):
    # `relationship` is a column here (relationship to the head), hence `orm.relationship` below.
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("household_id", "position"),
        # The database, not only the API, guarantees one head of household.
        Index("uq_members_one_head", "household_id", unique=True, postgresql_where=text("is_head")),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    household_id: Mapped[UUID] = mapped_column(ForeignKey("households.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(SmallInteger)
    is_head: Mapped[bool]
    relationship: Mapped[str] = mapped_column(String(20))
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    sex: Mapped[str] = mapped_column(String(10))
    date_of_birth: Mapped[date] = mapped_column(Date)
    disability: Mapped[bool] = mapped_column(default=False, server_default=false())

    household: Mapped[Household] = orm.relationship(back_populates="members", lazy="raise")
    identifiers: Mapped[list[MemberIdentifier]] = orm.relationship(
        order_by="MemberIdentifier.scheme", lazy="raise", cascade="all, delete-orphan"
    )


class MemberIdentifier(Base):
    __tablename__ = "member_identifiers"
    __table_args__ = (Index("ix_member_identifiers_scheme", "scheme", "value"),)

    member_id: Mapped[UUID] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    scheme: Mapped[str] = mapped_column(String(30), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))


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
