"""Events published by the provider service on `provider.events`.

ProviderRegistered and ProviderUpdated carry the provider's whole snapshot, pay points
included: a consumer replaces what it holds with a snapshot of a higher `version` and ignores
an older one. ProviderSuspended and ProviderReactivated carry the status change and its reason.

No event ever carries a secret: the credentials of webhooks and outbound calls live in the
disbursement service, a base URL never holds credentials or a query, and contact details stay
in the provider service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from amana_contracts.base import EventData

Mechanism = Literal["mobile_money", "bank_transfer", "cash_pay_point", "prepaid_card", "voucher"]
ProviderStatus = Literal["active", "suspended"]
PayPointStatus = Literal["active", "inactive"]
DeliveryMode = Literal["api", "file"]
FileFormat = Literal["csv", "iso20022_pain001"]
CsvDelimiter = Literal[",", ";", "|", "\t"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeeModelV1(_Value):
    """What the provider charges per payment, for cost reporting: fixed + percentage."""

    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency of `fixed_minor`")
    fixed_minor: int = Field(ge=0, description="Fixed fee per payment, in minor units")
    basis_points: int = Field(
        ge=0, le=10_000, description="Fee on the amount paid, in basis points (1/100 percent)"
    )


class FileProfileV1(_Value):
    format: FileFormat
    delimiter: CsvDelimiter | None = Field(description="csv only")
    max_records_per_file: int = Field(ge=1)


class DeliveryV1(_Value):
    """How payment batches reach the provider: its API, or a file for its portal."""

    mode: DeliveryMode
    base_url: str | None = Field(
        description="api mode: https base URL on an allowlisted host, without credentials"
    )
    file_profile: FileProfileV1 | None = Field(description="file mode: the file's shape")


class GpsV1(_Value):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class PayPointV1(_Value):
    pay_point_id: UUID
    code: str
    name: str
    location_codes: list[str] = Field(description="Locations it serves, and every code below")
    gps: GpsV1 | None
    opening_days: list[Weekday]
    daily_capacity: int = Field(ge=1, description="Beneficiaries it can pay per day")
    status: PayPointStatus
    version: int = Field(ge=1)


class ProviderEventV1(EventData):
    """What every provider event carries; the provider id is the subject and the Kafka key."""

    service = "provider"

    provider_id: UUID
    code: str = Field(description="Unique provider code")

    def subject(self) -> str:
        return str(self.provider_id)


class ProviderSnapshotV1(ProviderEventV1):
    """A provider as it is now (the base of ProviderRegistered and ProviderUpdated)."""

    legal_name: str
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    currencies: list[str] = Field(min_length=1, description="ISO 4217 currencies it pays in")
    status: ProviderStatus
    status_reason: str | None
    mechanisms: list[Mechanism] = Field(min_length=1)
    service_areas: list[str] = Field(
        min_length=1,
        description="Location codes it covers; an area covers its code and every code below "
        "it (KE-047 covers KE-047-0101)",
    )
    fee: FeeModelV1
    delivery: DeliveryV1
    pay_points: list[PayPointV1] = Field(description="All its pay points, by code")
    version: int = Field(ge=1, description="Increases with every change of the provider")
    updated_at: datetime


class ProviderRegisteredV1(ProviderSnapshotV1):
    """A payment service provider was registered; carries its whole snapshot."""

    event_name = "ProviderRegistered"


class ProviderUpdatedV1(ProviderSnapshotV1):
    """A provider or one of its pay points changed; carries the provider's whole snapshot."""

    event_name = "ProviderUpdated"


class ProviderStatusChangeV1(ProviderEventV1):
    """A provider's status changed (the base of ProviderSuspended and ProviderReactivated)."""

    reason: str
    changed_at: datetime
    version: int = Field(ge=1, description="The provider's version after the change")


class ProviderSuspendedV1(ProviderStatusChangeV1):
    """A provider was suspended: nothing new is assigned to or sent through it."""

    event_name = "ProviderSuspended"


class ProviderReactivatedV1(ProviderStatusChangeV1):
    """A suspended provider was reactivated."""

    event_name = "ProviderReactivated"
