"""Settings base: every service subclasses it with its own env prefix (`REGISTRY_`, ...)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
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


Environment = Literal["development", "test", "production"]
OtlpProtocol = Literal["http/protobuf", "grpc"]
TracesSampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512"]
PRODUCTION_REPLICATION_FACTOR = 3


@dataclass(frozen=True)
class TopicReplication:
    """How many brokers hold each partition, and how many must have a write before it counts."""

    replication_factor: int
    min_insync_replicas: int


class KafkaSettings(BaseSettings):
    """How to reach Kafka and how its topics are replicated. Every service has these fields
    under its prefix (`REGISTRY_KAFKA_SECURITY_PROTOCOL`); the topic creator
    (`python -m amana_common.topics`) reads them as `AMANA_KAFKA_...`."""

    model_config = SettingsConfigDict(env_prefix="AMANA_", extra="ignore")

    # The topic creator runs against the local broker and compose's: development unless
    # AMANA_ENVIRONMENT says otherwise. Services default to production (ServiceSettings).
    environment: Environment = "development"
    kafka_bootstrap: str = Field(
        default_factory=lambda: os.environ.get("AMANA_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP)
    )
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = Field(default="", repr=False)
    kafka_ssl_ca_file: str = Field(default="", description="PEM CA bundle; empty: system CAs")
    kafka_ssl_cert_file: str = Field(default="", description="PEM client certificate (mTLS)")
    kafka_ssl_key_file: str = Field(default="", description="PEM key of the client certificate")
    kafka_replication_factor: int | None = Field(
        default=None,
        ge=1,
        description=f"default 1, and {PRODUCTION_REPLICATION_FACTOR} in production",
    )
    kafka_min_insync_replicas: int | None = Field(
        default=None, ge=1, description="default: the factor minus one, at least 1, at most 2"
    )

    @field_validator("kafka_replication_factor", "kafka_min_insync_replicas", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        """An empty variable (as compose and Helm write an unset value) means the default."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_kafka(self) -> KafkaSettings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"{self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if bool(self.kafka_ssl_cert_file) != bool(self.kafka_ssl_key_file):
            raise ValueError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together")
        replication = self.topic_replication()
        if self.environment == "production" and replication.replication_factor < 2:
            raise ValueError(
                "production refuses a Kafka replication factor of 1: one broker lost would "
                "lose acknowledged events (set KAFKA_REPLICATION_FACTOR, e.g. 3)"
            )
        if replication.min_insync_replicas > replication.replication_factor:
            raise ValueError("KAFKA_MIN_INSYNC_REPLICAS cannot exceed KAFKA_REPLICATION_FACTOR")
        return self

    def topic_replication(self) -> TopicReplication:
        default_factor = PRODUCTION_REPLICATION_FACTOR if self.environment == "production" else 1
        factor = self.kafka_replication_factor or default_factor
        in_sync = self.kafka_min_insync_replicas or min(2, max(1, factor - 1))
        return TopicReplication(factor, in_sync)


class TracingSettings(BaseSettings):
    """OpenTelemetry's standard variables, unprefixed and alike for every service. Tracing is
    on only when an endpoint is set; the exporters read the other standard variables
    themselves (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _CERTIFICATE, _COMPRESSION), and the
    SDK OTEL_RESOURCE_ATTRIBUTES and OTEL_BSP_*."""

    model_config = SettingsConfigDict(env_prefix="OTEL_", extra="ignore")

    exporter_otlp_endpoint: str = Field(
        default="",
        description="the collector's base URL (http://collector:4318 for http/protobuf, whose "
        "path /v1/traces is added; http://collector:4317 for grpc); empty: no tracing",
    )
    exporter_otlp_traces_endpoint: str = Field(
        default="", description="the full URL for traces, used as it is; wins over the above"
    )
    exporter_otlp_protocol: OtlpProtocol = "http/protobuf"
    service_name: str = Field(default="", description="default: amana-<service>")
    traces_sampler: TracesSampler = "parentbased_always_on"
    traces_sampler_arg: float | None = Field(
        default=None, ge=0, le=1, description="the ratio of the *traceidratio samplers (1.0)"
    )

    @field_validator(
        "exporter_otlp_protocol", "traces_sampler", "traces_sampler_arg", mode="before"
    )
    @classmethod
    def _empty_is_default(cls, value: object, info: ValidationInfo) -> object:
        """An empty variable (as compose and Helm write an unset value) means the default."""
        if value != "":
            return value
        return cls.model_fields[info.field_name or ""].default

    @property
    def enabled(self) -> bool:
        return bool(self.exporter_otlp_endpoint or self.exporter_otlp_traces_endpoint)


class ServiceSettings(KafkaSettings):
    """Shared configuration. Subclasses set `model_config = service_config("REGISTRY_")`."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")
    has_database: ClassVar[bool] = True
    # Whether the server believes X-Forwarded-For/-Proto from loopback (uvicorn's default):
    # services behind the local gateway then log the caller's address.
    server_proxy_headers: ClassVar[bool] = True
    # False for a service that neither publishes nor consumes (the PSP sandbox): its worker's
    # readiness does not ask the broker.
    uses_kafka: ClassVar[bool] = True

    service_name: str = "amana"
    # Production unless told otherwise (<PREFIX>ENVIRONMENT, else AMANA_ENVIRONMENT for every
    # service): a deployment that forgets the setting gets every check.
    environment: Environment = Field(
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
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    max_body_bytes: int = 1_048_576
    db_pool_size: int = 10
    db_pool_timeout_s: float = Field(
        default=10.0, gt=0, description="a request waiting longer for a free connection is a 503"
    )
    db_lock_timeout_ms: int = Field(
        default=2_000, ge=0, description="a lock waited for longer is a 409 'try again'; 0: off"
    )
    db_statement_timeout_ms: int = Field(default=30_000, ge=0, description="0: off")
    db_idle_in_transaction_timeout_ms: int = Field(default=60_000, ge=0, description="0: off")
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
    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_batch_max_bytes: int = Field(default=4 * 1_048_576, ge=1)
    outbox_poll_interval_s: float = Field(default=0.05, gt=0)
    outbox_max_attempts: int = Field(
        default=5, ge=1, description="failed publishes of one row before it is parked"
    )
    outbox_publish_timeout_s: float = Field(default=10, gt=0)
    outbox_metrics_interval_s: float = Field(default=5, gt=0)
    consumer_max_consecutive_dead_letters: int = Field(
        default=10, ge=1, description="the consumer stops after this many DLQ sends in a row"
    )
    consumer_retry_backoff_s: float = Field(default=0.5, gt=0)
    consumer_max_backoff_s: float = Field(default=30, gt=0)
    consumer_max_records: int = Field(
        default=500, ge=1, le=20_000, description="Records a consumer takes per poll at most"
    )
    processed_events_retention_days: int = Field(
        default=7, ge=1, description="at least the topics' retention, so a redelivery is known"
    )
    idempotency_keys_retention_days: int = Field(
        default=7, ge=1, description="stored responses (personal data) are deleted after this"
    )
    retention_interval_s: float = Field(default=3600, gt=0)
    tracing: TracingSettings = Field(
        default_factory=TracingSettings, description="from the OTEL_* variables"
    )

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
