import base64
import binascii
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from amana_common.outbound import OutboundUrlPolicy, normalize_host_pattern
from amana_common.settings import ServiceSettings, service_config
from amana_contracts.psp import MAX_PAYMENTS_PER_BATCH

# 32 bytes, base64: development and tests only; production refuses it.
DEFAULT_SECRETS_KEY = "ZGV2LW9ubHktYW1hbmEtY2hhbm5lbC1zZWNyZXRzLWs="


class DisbursementSettings(ServiceSettings):
    """Disbursement configuration: every field can be set as `DISBURSEMENT_<FIELD>`."""

    model_config = service_config("DISBURSEMENT_")

    service_name: str = "disbursement"
    port: int = 8104
    # Statements and webhooks carry many results: the service-wide limit is the statement's,
    # and the webhook route holds its own, smaller one.
    max_body_bytes: int = 16 * 1024 * 1024
    webhook_max_body_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    secrets_key: str = Field(
        default=DEFAULT_SECRETS_KEY,
        description="base64 of 32 random bytes: the AES-256-GCM key sealing channel secrets",
    )
    webhook_secret_overlap_s: int = Field(
        default=86_400, ge=0, le=30 * 86_400, description="How long a rotated secret verifies"
    )
    batch_size: int = Field(default=1000, ge=1, le=MAX_PAYMENTS_PER_BATCH)
    dispatch_interval_s: float = Field(default=1.0, gt=0)
    dispatch_timeout_s: float = Field(default=30.0, gt=0)
    dispatch_max_attempts: int = Field(default=8, ge=1)
    dispatch_backoff_base_s: float = Field(default=2.0, gt=0)
    dispatch_backoff_cap_s: float = Field(default=600.0, gt=0)
    dispatch_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="A batch being posted is retried after this if its worker vanished",
    )
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=60.0, gt=0)
    expiry_interval_s: float = Field(default=30.0, gt=0)
    expiry_batch_size: int = Field(default=5000, ge=1)
    allowed_api_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts a provider's API may be called on (exact, or *.domain); empty "
        "refuses every api dispatch",
    )
    allowed_api_ports: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [443])
    debtor_name: str = Field(default="Amana cash transfer programme", max_length=140)
    debtor_account: str = Field(default="AMANA-DISBURSEMENT", max_length=34)

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

    @field_validator("secrets_key")
    @classmethod
    def _key_is_32_bytes(cls, value: str) -> str:
        try:
            key = base64.b64decode(value, validate=True)
        except binascii.Error as error:
            raise ValueError("secrets_key must be base64") from error
        if len(key) != 32:
            raise ValueError("secrets_key must be 32 bytes (base64 of 32 random bytes)")
        return value

    @model_validator(mode="after")
    def _no_default_key_in_production(self) -> "DisbursementSettings":
        if self.is_production and self.secrets_key == DEFAULT_SECRETS_KEY:
            raise ValueError("production refuses the default DISBURSEMENT_SECRETS_KEY")
        return self

    def secrets_key_bytes(self) -> bytes:
        return base64.b64decode(self.secrets_key)

    def api_url_policy(self) -> OutboundUrlPolicy:
        return OutboundUrlPolicy(
            allowed_hosts=tuple(self.allowed_api_hosts),
            allowed_ports=frozenset(self.allowed_api_ports),
            production=self.is_production,
        )
