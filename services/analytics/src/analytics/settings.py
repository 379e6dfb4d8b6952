"""Analytics configuration: every field can be set as `ANALYTICS_<FIELD>`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from amana_common.outbound import OutboundUrlPolicy, UnsafeUrl, normalize_host_pattern
from amana_common.settings import ServiceSettings, service_config

DEFAULT_PSEUDONYM_KEY = "dev-only-analytics-pseudonym-key-change-me"
MIN_PSEUDONYM_KEY_BYTES = 32


class AnalyticsSettings(ServiceSettings):
    """Analytics configuration: every field can be set as `ANALYTICS_<FIELD>`."""

    model_config = service_config("ANALYTICS_")

    service_name: str = "analytics"
    port: int = 8105

    consumer_name: str = Field(
        default="analytics",
        description="Consumer group and processed_events name of the ingest consumer",
    )
    pseudonym_key: str = Field(
        default=DEFAULT_PSEUDONYM_KEY,
        description="HMAC key of the pseudonymous keys of households, payments and flags",
    )
    consumer_max_records: int = Field(
        default=2000, ge=1, le=20_000, description="Events per poll, applied in one transaction"
    )
    report_max_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    report_statement_timeout_s: float = Field(default=30, gt=0)

    dhis2_mapping: str = Field(default="", description="The DHIS2 mapping as JSON")
    dhis2_mapping_file: str = Field(default="", description="...or a path to it")
    dhis2_url: str = Field(default="", description="Base URL of the DHIS2 instance to push to")
    dhis2_allowed_hosts: str = Field(default="", description="Comma-separated host allowlist")
    dhis2_allowed_ports: str = "443"
    dhis2_username: str = ""
    dhis2_password: str = ""
    dhis2_token: str = Field(default="", description="A DHIS2 personal access token (d2pat_...)")
    dhis2_timeout_s: float = Field(default=30, gt=0, le=300)

    @model_validator(mode="after")
    def _refuse_default_key(self) -> AnalyticsSettings:
        if self.is_production and (
            self.pseudonym_key == DEFAULT_PSEUDONYM_KEY
            or len(self.pseudonym_key.encode()) < MIN_PSEUDONYM_KEY_BYTES
        ):
            raise ValueError(
                "production refuses the default pseudonym key or one shorter than "
                f"{MIN_PSEUDONYM_KEY_BYTES} bytes: set ANALYTICS_PSEUDONYM_KEY"
            )
        return self

    @model_validator(mode="after")
    def _check_dhis2_url(self) -> AnalyticsSettings:
        if self.dhis2_url:
            policy = OutboundUrlPolicy(
                allowed_hosts=tuple(normalize_host_pattern(h) for h in self.dhis2_hosts()),
                allowed_ports=self.dhis2_ports(),
                production=self.is_production,
            )
            try:
                self.dhis2_url = policy.check(self.dhis2_url)
            except UnsafeUrl as error:
                raise ValueError(f"ANALYTICS_DHIS2_URL: the URL {error}") from error
        return self

    def dhis2_mapping_document(self) -> dict[str, Any] | None:
        """The configured mapping as a JSON document, or None when none is configured."""
        if self.dhis2_mapping:
            document: dict[str, Any] = json.loads(self.dhis2_mapping)
            return document
        if self.dhis2_mapping_file:
            loaded: dict[str, Any] = json.loads(Path(self.dhis2_mapping_file).read_text("utf-8"))
            return loaded
        return None

    def dhis2_hosts(self) -> tuple[str, ...]:
        return tuple(h.strip() for h in self.dhis2_allowed_hosts.split(",") if h.strip())

    def dhis2_ports(self) -> frozenset[int]:
        return frozenset(int(p) for p in self.dhis2_allowed_ports.split(",") if p.strip())
