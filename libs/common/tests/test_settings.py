"""Settings: one env prefix per service, a derived database URL, no default secrets in
production."""

import secrets

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from amana_common.settings import (
    COMMITTED_JWT_SECRETS,
    ServiceSettings,
    database_url_for,
    service_config,
)

STRONG_SECRET = secrets.token_urlsafe(48)
STRONG_DB = "postgresql+asyncpg://amana:Vx9-long-random-pw@db.internal:5432/amana_demo"


class DemoSettings(ServiceSettings):
    model_config = service_config("DEMO_")

    service_name: str = "demo"
    port: int = 8199


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AMANA_DATABASE_URL", "AMANA_KAFKA_BOOTSTRAP", "PORT", "ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("DEMO_ENVIRONMENT", "DEMO_JWT_SECRET", "DEMO_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AMANA_ENVIRONMENT", "AMANA_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)


def test_env_prefix_is_read_and_unprefixed_variables_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_PORT", "9123")
    monkeypatch.setenv("DEMO_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("PORT", "1")
    monkeypatch.setenv("REGISTRY_LOG_LEVEL", "DEBUG")

    settings = DemoSettings(environment="test")

    assert settings.port == 9123
    assert settings.max_body_bytes == 2048
    assert settings.log_level == "INFO"


def test_database_url_is_derived_from_amana_database_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AMANA_DATABASE_URL", "postgresql://svc:p%40ss@pg.example:6543/postgres")

    assert DemoSettings(environment="test").database_url == (
        "postgresql+asyncpg://svc:p%40ss@pg.example:6543/amana_demo"
    )
    assert database_url_for("payroll") == (
        "postgresql+asyncpg://svc:p%40ss@pg.example:6543/amana_payroll"
    )


def test_explicit_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMANA_DATABASE_URL", "postgresql://svc:pw@pg.example/postgres")
    monkeypatch.setenv("DEMO_DATABASE_URL", STRONG_DB)

    assert DemoSettings(environment="test").database_url == STRONG_DB


def test_the_environment_defaults_to_production() -> None:
    settings = DemoSettings(jwt_secret=STRONG_SECRET, database_url=STRONG_DB)

    assert settings.environment == "production"
    assert settings.is_production


@pytest.mark.parametrize("environment", ["development", "production"])
def test_a_jwt_secret_or_a_jwks_url_is_required(environment: str) -> None:
    with pytest.raises(ValidationError, match="DEMO_JWT_SECRET"):
        DemoSettings(environment=environment, database_url=STRONG_DB)


@pytest.mark.parametrize("environment", ["development", "test", "production"])
@pytest.mark.parametrize("secret", sorted(COMMITTED_JWT_SECRETS))
def test_a_secret_published_in_the_repository_is_refused_everywhere(
    environment: str, secret: str
) -> None:
    with pytest.raises(ValidationError, match="published"):
        DemoSettings(environment=environment, database_url=STRONG_DB, jwt_secret=secret)


def test_the_old_defaults_are_among_the_refused_secrets() -> None:
    assert {
        "dev-only-insecure-jwt-secret-change-me",
        "dev-only-compose-jwt-secret-not-for-production",
    } <= COMMITTED_JWT_SECRETS


def test_a_stack_shares_its_environment_and_secret_unless_a_service_has_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AMANA_ENVIRONMENT", "development")
    monkeypatch.setenv("AMANA_JWT_SECRET", STRONG_SECRET)

    shared = DemoSettings()
    monkeypatch.setenv("DEMO_ENVIRONMENT", "test")
    own = DemoSettings()

    assert (shared.environment, shared.jwt_secret) == ("development", STRONG_SECRET)
    assert own.environment == "test"


def test_an_unknown_shared_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMANA_ENVIRONMENT", "staging")

    with pytest.raises(ValidationError, match="environment"):
        DemoSettings(jwt_secret=STRONG_SECRET, database_url=STRONG_DB)


def test_tests_get_a_generated_secret_shared_by_the_process() -> None:
    first, second = DemoSettings(environment="test"), ServiceSettings(environment="test")

    assert first.jwt_secret == second.jwt_secret
    assert len(first.jwt_secret.encode()) >= 32
    assert first.jwt_secret not in COMMITTED_JWT_SECRETS


def test_development_accepts_a_generated_secret_and_the_local_database() -> None:
    settings = DemoSettings(environment="development", jwt_secret=STRONG_SECRET)

    assert settings.database_url.endswith("/amana_demo")
    assert not settings.is_production


@pytest.mark.parametrize("environment", ["development", "test", "production"])
@pytest.mark.parametrize("secret", ["short-but-not-default", "x" * 31])
def test_a_short_jwt_secret_is_refused_everywhere(environment: str, secret: str) -> None:
    with pytest.raises(ValidationError, match="JWT secret shorter"):
        DemoSettings(environment=environment, database_url=STRONG_DB, jwt_secret=secret)


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql+asyncpg://amana:amana@db/amana_demo",
        "postgresql+asyncpg://postgres:postgres@db/amana_demo",
        "postgresql+asyncpg://amana:password@db/amana_demo",
        "postgresql+asyncpg://amana:@db/amana_demo",
        "postgresql+asyncpg://amana@db/amana_demo",
    ],
)
def test_production_refuses_default_or_empty_database_passwords(database_url: str) -> None:
    with pytest.raises(ValidationError, match="database password"):
        DemoSettings(environment="production", jwt_secret=STRONG_SECRET, database_url=database_url)


def test_production_refuses_the_derived_default_database_url() -> None:
    with pytest.raises(ValidationError, match="database password"):
        DemoSettings(environment="production", jwt_secret=STRONG_SECRET)


def test_production_accepts_real_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_ENVIRONMENT", "production")
    monkeypatch.setenv("DEMO_JWT_SECRET", STRONG_SECRET)
    monkeypatch.setenv("AMANA_DATABASE_URL", "postgresql://amana:Vx9-long-random-pw@db/postgres")

    settings = DemoSettings()

    assert settings.is_production
    assert settings.database_url == "postgresql+asyncpg://amana:Vx9-long-random-pw@db/amana_demo"


def test_production_with_a_jwks_url_needs_no_shared_secret() -> None:
    settings = DemoSettings(
        environment="production",
        database_url=STRONG_DB,
        jwks_url="https://id.example/.well-known/jwks.json",
    )

    assert settings.jwt_secret == ""


def test_database_credentials_of_their_own_replace_the_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kubernetes gives the credentials from a Secret and the address from a ConfigMap."""
    monkeypatch.setenv("DEMO_DATABASE_URL", "postgresql+asyncpg://db.internal:5432/amana_demo")
    monkeypatch.setenv("DEMO_DATABASE_USER", "demo_app")
    monkeypatch.setenv("DEMO_DATABASE_PASSWORD", "p@ss/w:rd#%?")

    settings = DemoSettings(jwt_secret=STRONG_SECRET)

    url = make_url(settings.database_url)
    assert (url.username, url.password) == ("demo_app", "p@ss/w:rd#%?")
    assert (url.host, url.port, url.database) == ("db.internal", 5432, "amana_demo")
    assert "p@ss/w:rd#%?" not in repr(settings)


def test_a_database_password_alone_keeps_the_urls_user() -> None:
    settings = DemoSettings(
        environment="test",
        database_url="postgresql+asyncpg://svc:amana@db.internal/amana_demo",
        database_password="Vx9-long-random-pw",
    )

    url = make_url(settings.database_url)
    assert (url.username, url.password) == ("svc", "Vx9-long-random-pw")


def test_production_refuses_a_url_without_a_password() -> None:
    with pytest.raises(ValidationError, match="database password"):
        DemoSettings(
            jwt_secret=STRONG_SECRET,
            database_url="postgresql+asyncpg://db.internal/amana_demo",
            database_user="demo_app",
        )
