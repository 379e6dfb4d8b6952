"""docker-compose.yml, checked statically (no Docker engine is needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.yml"
DATABASES = {
    "amana_registry",
    "amana_provider",
    "amana_payroll",
    "amana_disbursement",
    "amana_analytics",
}
LONG_RUNNING_ROLES = ("api", "worker")

Service = dict[str, Any]


@pytest.fixture(scope="module")
def services() -> dict[str, Service]:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(compose, dict)
    result: dict[str, Service] = compose["services"]
    return result


def amana_services(services: dict[str, Service]) -> dict[str, Service]:
    """The containers of the Amana image (those that build it)."""
    return {name: svc for name, svc in services.items() if "build" in svc}


def depends_on(service: Service) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    assert isinstance(deps, dict), "depends_on must use the long form with conditions"
    return {name: spec["condition"] for name, spec in deps.items()}


def test_compose_parses_and_has_the_stack(services: dict[str, Service]) -> None:
    expected = {
        "postgres",
        "kafka",
        "kafka-topics",
        "registry-migrate",
        "registry-api",
        "registry-worker",
    }
    assert expected <= services.keys()


def test_one_image_built_from_the_repository_dockerfile(services: dict[str, Service]) -> None:
    amana = amana_services(services)
    assert {"kafka-topics", "registry-migrate", "registry-api", "registry-worker"} <= amana.keys()
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
    for name, svc in amana_services(services).items():
        bootstrap = (svc.get("environment") or {}).get("AMANA_KAFKA_BOOTSTRAP")
        assert bootstrap == "kafka:9092", name
    assert "healthcheck" in kafka


def test_amana_containers_wait_for_migrations(services: dict[str, Service]) -> None:
    checked = 0
    for name, svc in amana_services(services).items():
        module, *rest = svc["command"]
        if not rest or rest[0] not in LONG_RUNNING_ROLES:
            continue
        deps = depends_on(svc)
        assert deps.get(f"{module}-migrate") == "service_completed_successfully", name
        assert deps.get("kafka-topics") == "service_completed_successfully", name
        checked += 1
    assert checked >= 2


def test_one_shots_wait_for_their_infrastructure(services: dict[str, Service]) -> None:
    assert depends_on(services["registry-migrate"]) == {"postgres": "service_healthy"}
    assert services["registry-migrate"]["command"] == ["registry", "migrate"]
    assert depends_on(services["kafka-topics"]) == {"kafka": "service_healthy"}
    assert services["kafka-topics"]["command"][0] == "amana_common.topics"
    for name in ("registry-migrate", "kafka-topics"):
        assert services[name]["restart"] == "no"


def test_healthy_conditions_have_healthchecks(services: dict[str, Service]) -> None:
    for name, svc in services.items():
        for dependency, condition in depends_on(svc).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
    assert "/readyz" in " ".join(services["registry-api"]["healthcheck"]["test"])


def test_api_is_published_and_listens_on_all_interfaces(services: dict[str, Service]) -> None:
    api = services["registry-api"]
    assert any(str(port).endswith(":8000") for port in api["ports"])
    assert api["environment"]["REGISTRY_HOST"] == "0.0.0.0"
    assert "ports" not in services["registry-worker"]


def test_postgres_creates_every_service_database(services: dict[str, Service]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    mounts = [str(volume) for volume in postgres["volumes"]]
    init = [m for m in mounts if "/docker-entrypoint-initdb.d/" in m]
    assert len(init) == 1
    init_sql = REPO_ROOT / init[0].split(":")[0]
    created = set(re.findall(r"CREATE DATABASE (\w+)", init_sql.read_text(), re.IGNORECASE))
    assert created == DATABASES


def test_secrets_come_from_a_development_only_env_file(services: dict[str, Service]) -> None:
    env_files = {env_file for svc in services.values() for env_file in svc.get("env_file") or []}
    assert len(env_files) == 1
    (reference,) = env_files
    default = re.fullmatch(r"\$\{\w+:-(.+)\}", reference)
    path = REPO_ROOT / (default.group(1) if default else reference)
    text = path.read_text()
    assert "DEVELOPMENT ONLY" in text
    assert "REGISTRY_DATABASE_URL=" in text
    assert "REGISTRY_JWT_SECRET=" in text
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            assert not key.endswith(("PASSWORD", "JWT_SECRET", "DATABASE_URL")), (name, key)
            if key.endswith("_ENVIRONMENT"):
                assert value != "production", name
