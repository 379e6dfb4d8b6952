"""docker-compose.yml, checked statically (no Docker engine is needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from amana_common.settings import MIN_JWT_SECRET_BYTES
from gateway.settings import GatewaySettings

from .conftest import CATALOG, SERVICES_WITH_DATABASE, SETTINGS, LoadSettings, env_prefix

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.yml"
DATABASES = set(CATALOG.databases())
KAFKA_SETTINGS = (
    "BOOTSTRAP",
    "SECURITY_PROTOCOL",
    "SASL_MECHANISM",
    "SASL_USERNAME",
    "SASL_PASSWORD",
    "SSL_CA_FILE",
    "SSL_CERT_FILE",
    "SSL_KEY_FILE",
    "REPLICATION_FACTOR",
    "MIN_INSYNC_REPLICAS",
)
LONG_RUNNING_ROLES = ("api", "worker")
GATEWAY = "gateway-api"

Service = dict[str, Any]


@pytest.fixture(scope="module")
def services() -> dict[str, Service]:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(compose, dict)
    result: dict[str, Service] = compose["services"]
    return result


@pytest.fixture(scope="module")
def env_file(services: dict[str, Service]) -> Path:
    """The one env_file every container reads (its default, when it is a ${VAR:-default})."""
    env_files = {env_file for svc in services.values() for env_file in svc.get("env_file") or []}
    assert len(env_files) == 1
    (reference,) = env_files
    default = re.fullmatch(r"\$\{\w+:-(.+)\}", reference)
    return REPO_ROOT / (default.group(1) if default else reference)


def read_env_file(env_file: Path, shell: dict[str, str] | None = None) -> dict[str, str]:
    """The env file as compose reads it: `${NAME}` expands from the lines above, and
    `${NAME:-default}` from the lines above, else the `shell`'s environment, else the default."""
    values: dict[str, str] = {}
    for line in env_file.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, value = line.split("=", 1)

        def expand(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if default is not None:
                return values.get(name) or (shell or {}).get(name) or default
            assert name in values, f"{key}: ${{{name}}} is not set above"
            return values[name]

        values[key.strip()] = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", expand, value.strip())
    return values


def interpolate(value: str, shell: dict[str, str]) -> str:
    """A value of docker-compose.yml as compose reads it from the `shell`'s environment."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: shell.get(m.group(1)) or m.group(2), value)


@pytest.fixture(scope="module")
def file_env(env_file: Path) -> dict[str, str]:
    return read_env_file(env_file)


def amana_services(services: dict[str, Service]) -> dict[str, Service]:
    """The containers of the Amana image (those that build it)."""
    return {name: svc for name, svc in services.items() if "build" in svc}


def service_containers(services: dict[str, Service]) -> dict[str, tuple[str, str]]:
    """Container name -> (service module, role) for the `python -m <service> <role>` ones."""
    return {
        name: (svc["command"][0], svc["command"][1])
        for name, svc in amana_services(services).items()
        if svc["command"][0] in SETTINGS
    }


def environment_of(
    service: Service, file_env: dict[str, str], shell: dict[str, str] | None = None
) -> dict[str, str]:
    """What the container's process sees: the env file, then `environment` over it, with the
    defaults of `${NAME:-default}` (or the `shell`'s values)."""
    environment = {
        key: interpolate(str(value), shell or {})
        for key, value in (service.get("environment") or {}).items()
    }
    return file_env | environment


def depends_on(service: Service) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    assert isinstance(deps, dict), "depends_on must use the long form with conditions"
    return {name: spec["condition"] for name, spec in deps.items()}


def published_ports(service: Service) -> list[str]:
    return [str(port) for port in service.get("ports") or []]


def test_compose_parses_and_has_the_stack(services: dict[str, Service]) -> None:
    infrastructure = {"postgres", "kafka", "kafka-topics"}
    assert infrastructure <= services.keys()
    expected = {
        f"{CATALOG.service(service).slug}-{role}"
        for service in SERVICES_WITH_DATABASE
        for role in ("migrate", "api", "worker")
    } | {GATEWAY}
    assert set(service_containers(services)) == expected


def test_every_service_runs_what_its_name_says(services: dict[str, Service]) -> None:
    for name, (module, role) in service_containers(services).items():
        assert name == f"{CATALOG.service(module).slug}-{role}"
    assert {module for module, _ in service_containers(services).values()} == SETTINGS.keys()


def test_gateway_is_an_api_only(services: dict[str, Service]) -> None:
    roles = {role for module, role in service_containers(services).values() if module == "gateway"}
    assert roles == {"api"}, "the gateway has no worker and no database to migrate"


def test_one_image_built_from_the_repository_dockerfile(services: dict[str, Service]) -> None:
    amana = amana_services(services)
    assert {"kafka-topics", *service_containers(services)} == amana.keys()
    builds = {
        (svc["build"]["context"], svc["build"].get("dockerfile", "Dockerfile"))
        for svc in amana.values()
    }
    assert builds == {(".", "Dockerfile")}
    assert (REPO_ROOT / "Dockerfile").is_file()
    assert len({svc["image"] for svc in amana.values()}) == 1


def test_kafka_is_the_official_image_in_kraft_mode(services: dict[str, Service]) -> None:
    kafka = services["kafka"]
    match = re.fullmatch(r"apache/kafka:(\d+)\.(\d+)\.(\d+)", kafka["image"])
    assert match, f"pin an apache/kafka 4.x tag, not {kafka['image']}"
    assert int(match.group(1)) == 4
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert "CONTROLLER" not in advertised
    # In-network clients bootstrap from kafka:9092, which the broker must advertise.
    assert "://kafka:9092" in advertised
    assert "healthcheck" in kafka


def test_kafka_clients_bootstrap_from_the_broker(services: dict[str, Service]) -> None:
    for name, svc in amana_services(services).items():
        environment = svc.get("environment") or {}
        bootstraps = {k: v for k, v in environment.items() if k.endswith("KAFKA_BOOTSTRAP")}
        if name != GATEWAY:  # the gateway talks to no broker
            assert bootstraps.get("AMANA_KAFKA_BOOTSTRAP") == "kafka:9092", name
        assert set(bootstraps.values()) <= {"kafka:9092"}, name


def test_amana_containers_wait_for_migrations(services: dict[str, Service]) -> None:
    checked = set()
    for name, (module, role) in service_containers(services).items():
        if role not in LONG_RUNNING_ROLES or module not in SERVICES_WITH_DATABASE:
            continue
        deps = depends_on(services[name])
        migrate = f"{CATALOG.service(module).slug}-migrate"
        assert deps.get(migrate) == "service_completed_successfully", name
        assert deps.get("kafka-topics") == "service_completed_successfully", name
        checked.add(name)
    assert {
        f"{service.slug}-{role}"
        for service in CATALOG.with_database()
        for role in ("api", "worker")
        if role == "api" or service.worker
    } == checked


@pytest.mark.parametrize("service", sorted(SERVICES_WITH_DATABASE))
def test_migrations_are_one_shots_after_postgres(
    services: dict[str, Service], service: str
) -> None:
    migrate = services[f"{CATALOG.service(service).slug}-migrate"]
    assert migrate["command"] == [service, "migrate"]
    assert depends_on(migrate) == {"postgres": "service_healthy"}
    assert migrate["restart"] == "no"


def test_topics_are_a_one_shot_after_kafka(services: dict[str, Service]) -> None:
    assert depends_on(services["kafka-topics"]) == {"kafka": "service_healthy"}
    assert services["kafka-topics"]["command"][0] == "amana_common.topics"
    assert services["kafka-topics"]["restart"] == "no"


def test_healthy_conditions_have_healthchecks(services: dict[str, Service]) -> None:
    for name, svc in services.items():
        for dependency, condition in depends_on(svc).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
    for name, (_, role) in service_containers(services).items():
        if role == "api":
            assert "/readyz" in " ".join(services[name]["healthcheck"]["test"]), name


def test_only_the_gateway_is_published(services: dict[str, Service]) -> None:
    published = {name for name, svc in amana_services(services).items() if "ports" in svc}
    assert published == {GATEWAY}
    (port,) = published_ports(services[GATEWAY])
    assert port.endswith(":8000:8000")
    # Its development token endpoint must not be reachable from other machines.
    assert port.startswith("127.0.0.1:")
    for name in ("postgres", "kafka"):
        assert all(port.startswith("127.0.0.1:") for port in published_ports(services[name]))


def test_apis_listen_on_all_interfaces_on_8000(
    services: dict[str, Service], file_env: dict[str, str]
) -> None:
    for name, (module, role) in service_containers(services).items():
        if role == "api":
            environment = environment_of(services[name], file_env)
            assert environment[f"{env_prefix(module)}HOST"] == "0.0.0.0", name
            assert environment[f"{env_prefix(module)}PORT"] == "8000", name


def test_every_service_gets_the_same_jwt_secret(
    services: dict[str, Service], file_env: dict[str, str]
) -> None:
    secrets = {
        name: environment_of(services[name], file_env)[f"{env_prefix(module)}JWT_SECRET"]
        for name, (module, _) in service_containers(services).items()
    }
    assert len(set(secrets.values())) == 1, secrets
    (secret,) = set(secrets.values())
    assert len(secret.encode()) >= MIN_JWT_SECRET_BYTES


def test_services_accept_their_environment(
    services: dict[str, Service], file_env: dict[str, str], load_settings: LoadSettings
) -> None:
    for name, (module, _) in service_containers(services).items():
        settings = load_settings(module, environment_of(services[name], file_env))
        assert settings.environment == "development", name
        assert settings.port == 8000, name
        if module in SERVICES_WITH_DATABASE:
            assert settings.database_url.endswith(f"@postgres:5432/amana_{module}"), name


def test_gateway_routes_to_the_internal_apis(
    services: dict[str, Service], file_env: dict[str, str], load_settings: LoadSettings
) -> None:
    settings = load_settings("gateway", environment_of(services[GATEWAY], file_env))
    assert isinstance(settings, GatewaySettings)
    routes = {route.prefix: route for route in settings.routes}
    expected = {
        route.prefix: (service.name, f"http://{service.slug}-api:8000", route.upstream_prefix)
        for service in CATALOG.routed()
        for route in service.routes
    }
    assert {"/registry", "/providers", "/pay-points", "/lookup"} <= expected.keys()
    assert {
        prefix: (route.service, route.upstream, route.upstream_prefix)
        for prefix, route in routes.items()
    } == expected
    assert sorted(settings.active_services or []) == sorted(s.name for s in CATALOG.routed())
    # Every upstream is an api container the gateway waits for.
    for route in routes.values():
        host = route.upstream.removeprefix("http://").split(":")[0]
        assert service_containers(services)[host] == (route.service, "api")
        assert depends_on(services[GATEWAY])[host] == "service_healthy"


def test_gateway_lists_are_json(services: dict[str, Service]) -> None:
    environment = services[GATEWAY]["environment"]
    for key in ("GATEWAY_ROUTES", "GATEWAY_ACTIVE_SERVICES", "GATEWAY_CORS_ORIGINS"):
        assert isinstance(json.loads(environment[key]), list), key


def test_postgres_creates_every_service_database(services: dict[str, Service]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    mounts = [str(volume) for volume in postgres["volumes"]]
    init = [m for m in mounts if "/docker-entrypoint-initdb.d/" in m]
    assert len(init) == 1
    init_sql = REPO_ROOT / init[0].split(":")[0]
    created = set(re.findall(r"CREATE DATABASE (\w+)", init_sql.read_text(), re.IGNORECASE))
    assert created == DATABASES


def test_secrets_come_from_a_development_only_env_file(
    services: dict[str, Service], env_file: Path, file_env: dict[str, str]
) -> None:
    assert "DEVELOPMENT ONLY" in env_file.read_text()
    for service in SERVICES_WITH_DATABASE:
        assert file_env[f"{env_prefix(service)}DATABASE_URL"].endswith(f"/amana_{service}")
    assert "GATEWAY_DATABASE_URL" not in file_env
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            assert not key.endswith(("PASSWORD", "JWT_SECRET", "DATABASE_URL", "CLIENTS")), (
                name,
                key,
            )
            if key.endswith("_ENVIRONMENT"):
                assert value != "production", name


def test_every_kafka_client_gets_the_kafka_security_settings(
    services: dict[str, Service], env_file: Path
) -> None:
    """PLAINTEXT by default; what the host's environment says (AMANA_KAFKA_*) otherwise."""
    shell = {
        "AMANA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AMANA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "AMANA_KAFKA_SASL_USERNAME": "amana-registry",
        "AMANA_KAFKA_SASL_PASSWORD": "sasl-password-under-test",
        "AMANA_KAFKA_SSL_CA_FILE": "/run/kafka/ca.crt",
        "AMANA_KAFKA_REPLICATION_FACTOR": "3",
        "AMANA_KAFKA_MIN_INSYNC_REPLICAS": "2",
    }
    clients = {
        name: module
        for name, (module, _) in service_containers(services).items()
        if module != "gateway"
    }
    assert clients
    for name, module in clients.items():
        p = env_prefix(module)
        default = environment_of(services[name], read_env_file(env_file))
        assert {f"{p}KAFKA_{setting}" for setting in KAFKA_SETTINGS} <= default.keys(), name
        assert default[f"{p}KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT", name
        assert default[f"{p}KAFKA_SASL_PASSWORD"] == "", name
        configured = environment_of(services[name], read_env_file(env_file, shell), shell)
        for variable, value in shell.items():
            assert configured[variable.replace("AMANA_", p, 1)] == value, (name, variable)
        assert configured[f"{p}KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_kafka_credentials_are_not_in_the_compose_file(services: dict[str, Service]) -> None:
    for name, svc in services.items():
        for key in svc.get("environment") or {}:
            assert not key.endswith(("SASL_USERNAME", "SASL_PASSWORD")), (name, key)
