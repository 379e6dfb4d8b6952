from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from amana_common.settings import ServiceSettings, service_config
from payroll.domain import AttributeType, attribute_schema


class PayrollSettings(ServiceSettings):
    """Payroll configuration: every field can be set as `PAYROLL_<FIELD>`."""

    model_config = service_config("PAYROLL_")

    service_name: str = "payroll"
    port: int = 8103
    outbox_batch_size: int = 50  # PayrollApproved chunks are up to 768 KiB each
    consumer_max_records: int = 2_000  # projections apply a whole poll in one statement
    projection_consumers: int = Field(
        default=2,
        ge=1,
        le=12,
        description="Consumers of the projections in one worker, in one group: while one "
        "waits on the database another validates its poll",
    )
    eligibility_attributes: Annotated[dict[str, AttributeType], NoDecode] = Field(
        default_factory=dict,
        description="The deployment's eligibility attributes and their types (boolean, integer, "
        'number, string), as JSON: {"pmt_score": "number", "housing_type": "string"}. Rules '
        "and budget priorities may name only these.",
    )
    scheduler_interval_s: float = Field(default=60, gt=0, description="How often due cycles are")
    generator_poll_s: float = Field(default=2, gt=0, description="How often the worker looks")
    generation_chunk_rows: int = Field(default=100_000, ge=1_000, le=1_000_000)
    generation_max_attempts: int = Field(default=3, ge=1, le=20)
    max_simulation_locations: int = Field(default=2_000, ge=10, le=20_000)

    @field_validator("eligibility_attributes", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        if isinstance(value, str):
            import json

            value = json.loads(value or "{}")
        if not isinstance(value, dict):
            raise ValueError('must be a JSON object such as {"pmt_score": "number"}')
        return attribute_schema({str(k): str(v) for k, v in value.items()})
