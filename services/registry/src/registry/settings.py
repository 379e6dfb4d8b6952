import os
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
    import_max_bytes: int = Field(
        default=1024**3, gt=0, description="Largest bulk import file (413 past it)"
    )
    import_chunk_size: int = Field(
        default=500, ge=1, le=5000, description="Households a bulk import applies per transaction"
    )
    import_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a worker holds an import without progress before another resumes it",
    )
    import_poll_s: float = Field(default=1.0, gt=0, description="How often an idle worker looks")
    import_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=0,
        le=64,
        description="Processes of the worker that read import records (parse, validate with "
        "fhir.resources, clean); 0 reads them in the worker's own process",
    )
