"""Provider tables: payment service providers, their pay points and their status history.

Currencies, mechanisms and service areas are small value sets read with the provider, so
they are arrays on its row; GIN indexes answer "offers this mechanism" (`@>`) and "covers this
location" (`&&` with the location's ancestors). Contact and file profile are JSON values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
    orm,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from amana_common.db import new_metadata
from amana_common.value_sets import one_of, subset_of
from amana_contracts.provider import Mechanism, PayPointStatus, ProviderStatus, Weekday

CODE_LENGTH = 32
LOCATION_LENGTH = 50


class Base(DeclarativeBase):
    metadata = new_metadata()


class Provider(Base):
    __tablename__ = "providers"
    __table_args__ = (
        Index("ix_providers_mechanisms", "mechanisms", postgresql_using="gin"),
        Index("ix_providers_service_areas", "service_areas", postgresql_using="gin"),
        CheckConstraint("country ~ '^[A-Z]{2}$'", name="country"),
        CheckConstraint("cardinality(currencies) >= 1", name="currencies"),
        CheckConstraint(
            f"cardinality(mechanisms) >= 1 AND {subset_of('mechanisms', Mechanism)}",
            name="mechanisms",
        ),
        CheckConstraint("cardinality(service_areas) >= 1", name="service_areas"),
        CheckConstraint(
            "fee_fixed_minor >= 0 AND fee_basis_points BETWEEN 0 AND 10000 "
            "AND fee_currency = ANY (currencies)",
            name="fee",
        ),
        CheckConstraint(
            "(delivery_mode = 'api' AND delivery_base_url IS NOT NULL "
            "AND delivery_file_profile IS NULL) OR (delivery_mode = 'file' "
            "AND delivery_file_profile IS NOT NULL AND delivery_base_url IS NULL)",
            name="delivery",
        ),
        CheckConstraint(one_of("status", ProviderStatus), name="status"),
        CheckConstraint("status <> 'suspended' OR status_reason IS NOT NULL", name="status_reason"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE_LENGTH), unique=True)
    legal_name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    currencies: Mapped[list[str]] = mapped_column(ARRAY(String(3)))
    mechanisms: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
    service_areas: Mapped[list[str]] = mapped_column(ARRAY(String(LOCATION_LENGTH)))
    contact: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    fee_currency: Mapped[str] = mapped_column(String(3))
    fee_fixed_minor: Mapped[int] = mapped_column(BigInteger)
    fee_basis_points: Mapped[int] = mapped_column(Integer)
    delivery_mode: Mapped[str] = mapped_column(String(4))
    delivery_base_url: Mapped[str | None] = mapped_column(String(2048))
    delivery_file_profile: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    status: Mapped[ProviderStatus] = mapped_column(String(10), index=True)
    status_reason: Mapped[str | None] = mapped_column(String(500))
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    pay_points: Mapped[list[PayPoint]] = orm.relationship(
        back_populates="provider",
        order_by="PayPoint.code",
        lazy="raise",
        cascade="all, delete-orphan",
    )

    @property
    def fee(self) -> dict[str, Any]:
        return {
            "currency": self.fee_currency,
            "fixed_minor": self.fee_fixed_minor,
            "basis_points": self.fee_basis_points,
        }

    @property
    def delivery(self) -> dict[str, Any]:
        return {
            "mode": self.delivery_mode,
            "base_url": self.delivery_base_url,
            "file_profile": self.delivery_file_profile,
        }


class PayPoint(Base):
    __tablename__ = "pay_points"
    __table_args__ = (
        UniqueConstraint("provider_id", "code"),
        Index("ix_pay_points_location_codes", "location_codes", postgresql_using="gin"),
        CheckConstraint(one_of("status", PayPointStatus), name="status"),
        CheckConstraint("daily_capacity > 0", name="daily_capacity"),
        CheckConstraint("cardinality(location_codes) >= 1", name="locations"),
        CheckConstraint(subset_of("opening_days", Weekday), name="opening_days"),
        CheckConstraint(
            "(latitude IS NULL AND longitude IS NULL) OR (latitude BETWEEN -90 AND 90 "
            "AND longitude BETWEEN -180 AND 180)",
            name="gps",
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("providers.id"))
    code: Mapped[str] = mapped_column(String(CODE_LENGTH))
    name: Mapped[str] = mapped_column(String(200))
    location_codes: Mapped[list[str]] = mapped_column(ARRAY(String(LOCATION_LENGTH)))
    latitude: Mapped[float | None] = mapped_column(Double)
    longitude: Mapped[float | None] = mapped_column(Double)
    opening_days: Mapped[list[str]] = mapped_column(ARRAY(String(3)))
    daily_capacity: Mapped[int] = mapped_column(Integer)
    status: Mapped[PayPointStatus] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(default=1, server_default="1")

    provider: Mapped[Provider] = orm.relationship(back_populates="pay_points", lazy="raise")

    @property
    def gps(self) -> dict[str, float] | None:
        if self.latitude is None or self.longitude is None:
            return None
        return {"latitude": self.latitude, "longitude": self.longitude}


class ProviderStatusChange(Base):
    """Who changed a provider's status, to what, why and when; registration is the first."""

    __tablename__ = "provider_status_changes"
    __table_args__ = (CheckConstraint(one_of("status", ProviderStatus), name="status"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("providers.id"), index=True)
    status: Mapped[ProviderStatus] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(500))
    actor: Mapped[str | None] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    provider: Mapped[Provider] = orm.relationship(lazy="raise")
