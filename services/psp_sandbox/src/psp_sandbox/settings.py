from typing import ClassVar

from pydantic import Field, model_validator

from amana_common.settings import ServiceSettings, service_config


class SandboxSettings(ServiceSettings):
    """PSP sandbox configuration: every field can be set as `PSP_SANDBOX_<FIELD>`. The
    simulated providers themselves are configured over HTTP (`PUT /sandbox/providers/{id}`)."""

    model_config = service_config("PSP_SANDBOX_")
    uses_kafka: ClassVar[bool] = False

    service_name: str = "psp_sandbox"
    port: int = 8190
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, description="A batch of 10,000 payments fits"
    )
    planner_batch_size: int = Field(
        default=5000, ge=1, le=50_000, description="Due results cut into webhooks per round"
    )
    poll_interval_s: float = Field(default=0.2, gt=0, le=10)
    delivery_concurrency: int = Field(default=8, ge=1, le=64)
    delivery_timeout_s: float = Field(default=10.0, gt=0, le=120)
    delivery_lease_s: float = Field(
        default=60.0, gt=0, description="A claimed delivery a crashed worker left is retried after"
    )
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_cap_s: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=12, ge=1, le=100)
    answer_max_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Amana's answers are kept up to this size"
    )

    @model_validator(mode="after")
    def _never_in_production(self) -> "SandboxSettings":
        if self.is_production:
            raise ValueError("the PSP sandbox simulates payments: it never runs in production")
        if self.delivery_lease_s <= self.delivery_timeout_s:
            raise ValueError("delivery_lease_s must exceed delivery_timeout_s")
        return self
