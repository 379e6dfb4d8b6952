"""Settings base: every service subclasses it with its own env prefix (`REGISTRY_`, ...)."""

from __future__ import annotations

import os
from typing import ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me"  # noqa: S105
MIN_JWT_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key is at least as long as the hash
DEFAULT_SERVER_URL = "postgresql://amana:amana@127.0.0.1:55432/postgres"
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:59092"


def database_url_for(service: str, server_url: str | None = None) -> str:
    """The async URL of `amana_<service>` on the server `AMANA_DATABASE_URL` names."""
    url = make_url(server_url or os.environ.get("AMANA_DATABASE_URL") or DEFAULT_SERVER_URL)
    return url.set(drivername="postgresql+asyncpg", database=f"amana_{service}").render_as_string(
        hide_password=False
    )


class ServiceSettings(BaseSettings):
    """Shared configuration. Subclasses set `model_config = service_config("REGISTRY_")`."""

    model_config = SettingsConfigDict(extra="ignore")
    has_database: ClassVar[bool] = True

    service_name: str = "amana"
    environment: Literal["development", "test", "production"] = "development"
    database_url: str = ""
    kafka_bootstrap: str = Field(
        default_factory=lambda: os.environ.get("AMANA_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP)
    )
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    max_body_bytes: int = 1_048_576
    db_pool_size: int = 10
    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_issuer: str = "amana-dev"
    jwt_audience: str = "amana"
    jwks_url: str = ""
    outbox_batch_size: int = 500
    outbox_poll_interval_s: float = 0.05
    consumer_max_attempts: int = 3

    @model_validator(mode="after")
    def _derive_and_guard(self) -> ServiceSettings:
        if not self.database_url:
            self.database_url = database_url_for(self.service_name)
        if self.environment == "production":
            self._refuse_default_secrets()
        return self

    def _refuse_default_secrets(self) -> None:
        if not self.jwks_url and self.jwt_secret == DEFAULT_JWT_SECRET:
            raise ValueError(
                "production refuses the default JWT secret: set *_JWT_SECRET or *_JWKS_URL"
            )
        if not self.jwks_url and len(self.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"production refuses a JWT secret shorter than {MIN_JWT_SECRET_BYTES} bytes"
            )
        password = make_url(self.database_url).password
        if self.has_database and password in (None, "", "amana", "postgres", "password"):
            raise ValueError("production refuses a default or empty database password")

    @property
    def is_production(self) -> bool:
        return self.environment == "production"


def service_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore")
