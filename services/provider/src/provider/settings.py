from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from amana_common.outbound import OutboundUrlPolicy, normalize_host_pattern
from amana_common.settings import ServiceSettings, service_config


class ProviderSettings(ServiceSettings):
    """Provider configuration: every field can be set as `PROVIDER_<FIELD>`; lists are
    comma-separated (`PROVIDER_ALLOWED_API_HOSTS=api.psp.example,*.mpesa.example`)."""

    model_config = service_config("PROVIDER_")

    service_name: str = "provider"
    port: int = 8102
    allowed_api_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts a provider's `api` base URL may name: exact, or *.domain. "
        "Empty refuses every api delivery.",
    )
    allowed_api_ports: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [443])
    max_pay_points_per_provider: int = Field(
        default=1000, ge=1, le=5000, description="Bounds the snapshot event's size"
    )

    @field_validator("allowed_api_hosts", "allowed_api_ports", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_api_hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        return [normalize_host_pattern(entry) for entry in value]

    def api_url_policy(self) -> OutboundUrlPolicy:
        return OutboundUrlPolicy(
            allowed_hosts=tuple(self.allowed_api_hosts),
            allowed_ports=frozenset(self.allowed_api_ports),
            production=self.is_production,
        )
