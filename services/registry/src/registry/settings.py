from pathlib import Path

from pydantic import Field

from amana_common.settings import ServiceSettings, service_config

REFERENCE = Path(__file__).resolve().parent / "reference"


class RegistrySettings(ServiceSettings):
    """Registry configuration: every field can be set as `REGISTRY_<FIELD>`."""

    model_config = service_config("REGISTRY_")

    service_name: str = "registry"
    port: int = 8101
    max_members_per_household: int = 50
    default_phone_region: str = Field(
        default="KE", pattern=r"^[A-Z]{2}$", description="Region of phone numbers given without +"
    )
    default_currency: str = Field(
        default="KES",
        pattern=r"^[A-Z]{3}$",
        description="Currency of a payment preference that names none",
    )
    locations_csv: Path = Field(
        default=REFERENCE / "locations_ke.csv",
        description="The location hierarchy: a CSV of code,name,level,parent_code (levels 1-4)",
    )
    attributes_schema: Path = Field(
        default=REFERENCE / "attributes.schema.json",
        description="JSON Schema (2020-12) of the households' eligibility attributes",
    )
    identifier_validators: dict[str, str] = Field(
        default_factory=dict,
        description="python-stdnum validator per identifier scheme, e.g. "
        '{"national_id": "za.idnr"}',
    )
