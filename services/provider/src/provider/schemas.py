"""Request and response bodies of the provider API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from amana_common.validation import (
    CountryCode,
    CurrencyCode,
    Email,
    LocationCode,
    Name,
    Omittable,
    Phone,
    RequestBody,
    Text,
    UniqueList,
)
from amana_contracts.provider import (
    CsvDelimiter,
    DeliveryMode,
    DeliveryV1,
    FeeModelV1,
    FileFormat,
    GpsV1,
    Mechanism,
    PayPointStatus,
    ProviderStatus,
    Weekday,
)

Code = Annotated[str, Text(pattern=r"^[A-Z0-9][A-Z0-9_-]{1,31}$")]
Reason = Annotated[str, Text(min_length=3, max_length=500, multiline=True)]
BaseUrl = Annotated[str, Text(max_length=2048)]

MAX_CURRENCIES = 20
MAX_SERVICE_AREAS = 500
MAX_PAY_POINT_LOCATIONS = 20
MAX_FIXED_FEE_MINOR = 10**12


class ContactIn(RequestBody):
    name: Name
    email: Email | None = None
    phone: Phone | None = Field(default=None, description="E.164 phone number")


class FeeIn(RequestBody):
    """Fixed + percentage fee per payment, for cost reporting."""

    currency: CurrencyCode = Field(description="ISO 4217; one of the provider's currencies")
    fixed_minor: int = Field(default=0, ge=0, le=MAX_FIXED_FEE_MINOR, description="Minor units")
    basis_points: int = Field(default=0, ge=0, le=10_000, description="1/100 of a percent")


def _only_when(
    field: str, value: str, present: dict[str, str] | None = None, *, absent: str
) -> dict[str, Any]:
    """JSON Schema: when `field` is `value`, the `present` fields are given (with their JSON
    type) and `absent` is left out or null."""
    present = present or {}
    return {
        "properties": {
            field: {"const": value},
            absent: {"type": "null"},
            **{name: {"type": kind} for name, kind in present.items()},
        },
        "required": [field, *present],
    }


class FileProfileIn(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"format": {"const": "csv"}}},
                _only_when("format", "iso20022_pain001", absent="delimiter"),
            ]
        }
    )

    format: FileFormat
    delimiter: CsvDelimiter | None = Field(
        default=None, validate_default=True, description='csv only; "," when left out'
    )
    max_records_per_file: int = Field(default=10_000, ge=1, le=1_000_000)

    @field_validator("delimiter")
    @classmethod
    def _csv_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("format") == "csv":
            return value or ","
        if value is not None:
            raise ValueError("a delimiter applies only to the csv format")
        return None


class DeliveryIn(RequestBody):
    """`{"mode": "api", "base_url": "https://..."}` or `{"mode": "file", "file_profile": {...}}`.
    A base URL must be https on an allowlisted host, without credentials, query or fragment."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                _only_when("mode", "api", {"base_url": "string"}, absent="file_profile"),
                _only_when("mode", "file", {"file_profile": "object"}, absent="base_url"),
            ]
        }
    )

    mode: DeliveryMode
    base_url: BaseUrl | None = Field(default=None, validate_default=True)
    file_profile: FileProfileIn | None = Field(default=None, validate_default=True)

    @field_validator("base_url", "file_profile")
    @classmethod
    def _matches_mode(cls, value: Any, info: ValidationInfo) -> Any:
        needed = {"base_url": "api", "file_profile": "file"}[str(info.field_name)]
        mode = info.data.get("mode")
        if mode == needed and value is None:
            raise ValueError(f"mode {needed} needs a {info.field_name}")
        if mode not in (needed, None) and value is not None:
            raise ValueError(f"only mode {needed} has a {info.field_name}")
        return value


Currencies = Annotated[UniqueList[CurrencyCode], Field(min_length=1, max_length=MAX_CURRENCIES)]
Mechanisms = Annotated[UniqueList[Mechanism], Field(min_length=1, max_length=5)]
ServiceAreas = Annotated[
    UniqueList[LocationCode],
    Field(
        min_length=1,
        max_length=MAX_SERVICE_AREAS,
        description="Location codes covered; an area covers its code and every code below it "
        "(KE-047 covers KE-047-0101)",
    ),
]


class ProviderIn(RequestBody):
    code: Code = Field(description="Unique, upper-case: e.g. MPESA-KE")
    legal_name: Name
    country: CountryCode = Field(description="ISO 3166-1 alpha-2")
    currencies: Currencies
    mechanisms: Mechanisms
    service_areas: ServiceAreas
    contact: ContactIn | None = None
    fee: FeeIn
    delivery: DeliveryIn


class ProviderPatch(RequestBody):
    """The fields to change; a list or object given replaces the whole value. `code` and
    status cannot be changed here (status: suspend / reactivate)."""

    legal_name: Omittable[Name] = None
    country: Omittable[CountryCode] = None
    currencies: Omittable[Currencies] = None
    mechanisms: Omittable[Mechanisms] = None
    service_areas: Omittable[ServiceAreas] = None
    contact: ContactIn | None = Field(default=None, description="null removes the contact")
    fee: Omittable[FeeIn] = None
    delivery: Omittable[DeliveryIn] = None


class ReasonIn(RequestBody):
    reason: Reason


class ProviderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    code: str
    legal_name: str
    country: str
    currencies: list[str]
    mechanisms: list[Mechanism]
    service_areas: list[str]
    contact: ContactIn | None
    fee: FeeModelV1
    delivery: DeliveryV1
    status: ProviderStatus
    status_reason: str | None
    status_changed_at: datetime
    registered_at: datetime
    updated_at: datetime
    version: int


class StatusChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    status: ProviderStatus
    reason: str
    actor: str | None
    changed_at: datetime


class GpsIn(RequestBody):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


Locations = Annotated[
    UniqueList[LocationCode],
    Field(
        min_length=1,
        max_length=MAX_PAY_POINT_LOCATIONS,
        description="Locations it serves, each inside the provider's service areas",
    ),
]
OpeningDays = Annotated[UniqueList[Weekday], Field(min_length=1, max_length=7)]
Capacity = Annotated[int, Field(ge=1, le=1_000_000, description="Beneficiaries paid per day")]


class PayPointIn(RequestBody):
    code: Code = Field(description="Unique within the provider")
    name: Name
    location_codes: Locations
    gps: GpsIn | None = None
    opening_days: OpeningDays
    daily_capacity: Capacity
    status: PayPointStatus = "active"


class PayPointPatch(RequestBody):
    """The fields to change; `code` cannot be changed."""

    name: Omittable[Name] = None
    location_codes: Omittable[Locations] = None
    gps: GpsIn | None = Field(default=None, description="null removes the position")
    opening_days: Omittable[OpeningDays] = None
    daily_capacity: Omittable[Capacity] = None
    status: Omittable[PayPointStatus] = None


class PayPointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    provider_id: UUID
    code: str
    name: str
    location_codes: list[str]
    gps: GpsV1 | None
    opening_days: list[Weekday]
    daily_capacity: int
    status: PayPointStatus
    created_at: datetime
    updated_at: datetime
    version: int


class ServingProvider(BaseModel):
    """An active provider serving the location, with its active pay points that serve it."""

    model_config = ConfigDict(from_attributes=True)

    id: UUID
    code: str
    legal_name: str
    currencies: list[str]
    mechanisms: list[Mechanism]
    fee: FeeModelV1
    pay_points: list[PayPointOut]


class Serving(BaseModel):
    location_code: str
    mechanism: Mechanism | None
    providers: list[ServingProvider]
