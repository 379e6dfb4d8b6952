"""Settings base: every service subclasses it with its own env prefix (`REGISTRY_`, ...)."""

from __future__ import annotations

import os
import secrets
from typing import ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

MIN_JWT_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key is at least as long as the hash
# Every JWT secret ever committed to this repository (defaults, compose, tests, benchmarks):
# anyone who has read it can sign tokens with them, so they are refused in every environment.
# `make run` generates its own secret into .local/; tests generate theirs.
COMMITTED_JWT_SECRETS = frozenset(
    {
        "dev-only-insecure-jwt-secret-change-me",
        "dev-only-compose-jwt-secret-not-for-production",
        "gateway-tests-shared-secret-0123456789abcdef",
        "jwt-secret-under-test-at-least-32-bytes-long",
        "jwt-secret-under-test",
        "a-real-secret",
        "bench-only-jwt-secret-0123456789abcdef",
        "another-secret-0123456789abcdefghij",
        "another-secret-of-at-least-32-bytes!",
        "k" * 48,
    }
)
# The test environment's secret when none is given: one per process, so that every service a
# test runs verifies the tokens the others issue, and nobody else knows it.
GENERATED_TEST_JWT_SECRET = secrets.token_urlsafe(48)
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
    # Whether the server believes X-Forwarded-For/-Proto from loopback (uvicorn's default):
    # services behind the local gateway then log the caller's address.
    server_proxy_headers: ClassVar[bool] = True

    service_name: str = "amana"
    # Production unless told otherwise (<PREFIX>ENVIRONMENT, else AMANA_ENVIRONMENT for every
    # service): a deployment that forgets the setting gets every check.
    environment: Literal["development", "test", "production"] = Field(
        default_factory=lambda: os.environ.get("AMANA_ENVIRONMENT", "production"),
        validate_default=True,
    )
    database_url: str = ""
    # The credentials of database_url, when they come from a Secret of their own (Kubernetes:
    # CloudNativePG's <cluster>-app): they replace the URL's, percent-encoded as URLs need.
    database_user: str = ""
    database_password: str = Field(default="", repr=False)
    # `worker` alone also answers /healthz, /readyz and /metrics on host:port (Kubernetes
    # probes and scraping); `all` has the API's.
    worker_probes: bool = False
    kafka_bootstrap: str = Field(
        default_factory=lambda: os.environ.get("AMANA_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP)
    )
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    max_body_bytes: int = 1_048_576
    db_pool_size: int = 10
    # <PREFIX>JWT_SECRET, else AMANA_JWT_SECRET (one secret for every service of a stack).
    jwt_secret: str = Field(default_factory=lambda: os.environ.get("AMANA_JWT_SECRET", ""))
    jwt_issuer: str = "amana-dev"
    jwt_audience: str = "amana"
    jwks_url: str = ""
    jwks_refresh_s: float = Field(
        default=300,
        ge=1,
        le=3600,
        description="The JWKS is fetched again after this long: a key the issuer withdrew is "
        "trusted no longer",
    )
    jwt_max_lifetime_s: int = Field(
        default=3600, ge=60, le=86_400, description="Tokens whose exp - iat is longer are refused"
    )
    outbox_batch_size: int = 500
    outbox_poll_interval_s: float = 0.05
    consumer_max_attempts: int = 3

    @model_validator(mode="after")
    def _derive_and_guard(self) -> ServiceSettings:
        if not self.database_url:
            self.database_url = database_url_for(self.service_name)
        if self.database_user or self.database_password:
            self.database_url = self._with_credentials(self.database_url)
        if not self.jwt_secret and self.environment == "test":
            self.jwt_secret = GENERATED_TEST_JWT_SECRET
        self._refuse_unsafe_jwt_secret()
        if self.environment == "production":
            self._refuse_default_database_password()
        return self

    def _with_credentials(self, database_url: str) -> str:
        url = make_url(database_url)
        url = url.set(
            username=self.database_user or url.username,
            password=self.database_password or url.password,
        )
        return url.render_as_string(hide_password=False)

    def _refuse_unsafe_jwt_secret(self) -> None:
        """In every environment: a known secret lets anyone sign tokens the services accept."""
        name = f"{self.model_config.get('env_prefix', '')}JWT_SECRET"
        if self.jwt_secret in COMMITTED_JWT_SECRETS:
            raise ValueError(
                f"{name} is a secret published in the Amana repository: generate your own "
                "(`make run` does, into .local/jwt-secret)"
            )
        if not self.jwt_secret and not self.jwks_url:
            raise ValueError(
                f"set {name} (at least {MIN_JWT_SECRET_BYTES} random bytes, the same for every "
                "service) or the identity provider's JWKS_URL"
            )
        if self.jwt_secret and len(self.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(f"{name}: a JWT secret shorter than {MIN_JWT_SECRET_BYTES} bytes")

    def _refuse_default_database_password(self) -> None:
        password = make_url(self.database_url).password
        if self.has_database and password in (None, "", "amana", "postgres", "password"):
            raise ValueError("production refuses a default or empty database password")

    @property
    def is_production(self) -> bool:
        return self.environment == "production"


def service_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore")
