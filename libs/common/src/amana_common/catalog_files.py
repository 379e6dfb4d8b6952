"""The deployment files that cannot read the service catalog, generated from it.

Whole files: deploy/compose/postgres-init.sql. Blocks between marker lines, the rest of the file
being written by hand: the service containers of docker-compose.yml, the per-service lines of
deploy/compose/dev.env and the `components` of deploy/helm/amana/values.yaml.
`python -m amana_common.catalog generate` writes them; `check` (and a test) fails when the
committed files differ.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from amana_common.catalog import Catalog, CatalogError, CatalogService

BEGIN = "# >>> generated from services/catalog.toml by `make catalog`: edit the catalog instead"
END = "# <<< generated from services/catalog.toml"

COMPOSE = Path("docker-compose.yml")
POSTGRES_INIT = Path("deploy/compose/postgres-init.sql")
DEV_ENV = Path("deploy/compose/dev.env")
HELM_VALUES = Path("deploy/helm/amana/values.yaml")

CONTAINER_PORT = 8000
# Kafka client settings every service container takes from the compose host's environment
# (AMANA_KAFKA_<NAME>), with defaults for compose's own PLAINTEXT broker. The SASL credentials
# are secrets: they go through the env file (dev.env), not docker-compose.yml.
KAFKA_PASS_THROUGH = {
    "SECURITY_PROTOCOL": "PLAINTEXT",
    "SASL_MECHANISM": "SCRAM-SHA-512",
    "SSL_CA_FILE": "",
    "SSL_CERT_FILE": "",
    "SSL_KEY_FILE": "",
    "REPLICATION_FACTOR": "1",
    "MIN_INSYNC_REPLICAS": "1",
}
KAFKA_SECRETS = ("SASL_USERNAME", "SASL_PASSWORD")
# OpenTelemetry's standard variables, passed through from the compose host's environment to
# every service as they are: no endpoint, no tracing (an OTLP collector or Jaeger reached
# from the containers, e.g. http://host.docker.internal:4318).
TRACING_PASS_THROUGH = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    "OTEL_TRACES_SAMPLER_ARG": "",
}
API_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
WORKER_RESOURCES = {"requests": {"cpu": "50m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}}


def _scalar(value: str) -> str:
    """A YAML scalar for `value`, quoted so that YAML reads it back as this very string."""
    if '"' in value and "'" not in value:
        return f"'{value}'"
    return json.dumps(value)


def _pass_through(variable: str, default: str) -> str:
    return f"${{{variable}:-{default}}}"


# --------------------------------------------------------------------------- docker-compose


def compose_environment(service: CatalogService) -> dict[str, str]:
    """The environment docker-compose.yml gives a service's containers (secrets excepted)."""
    p = service.prefix
    env = {
        f"{p}ENVIRONMENT": "development",
        f"{p}LOG_LEVEL": "INFO",
        f"{p}HOST": "0.0.0.0",  # noqa: S104 - inside its container, behind compose's network
        f"{p}PORT": str(CONTAINER_PORT),
    }
    if not service.gateway:
        env[f"{p}KAFKA_BOOTSTRAP"] = "kafka:9092"
        for name, default in KAFKA_PASS_THROUGH.items():
            env[f"{p}KAFKA_{name}"] = _pass_through(f"AMANA_KAFKA_{name}", default)
    env |= {name: _pass_through(name, default) for name, default in TRACING_PASS_THROUGH.items()}
    env["OTEL_SERVICE_NAME"] = f"amana-{service.slug}"  # as the Helm chart names it
    return env | dict(service.compose_env)


def _compose_upstream(service: CatalogService) -> str:
    return f"http://{service.slug}-api:{CONTAINER_PORT}"


def _gateway_routing_lines(catalog: Catalog, prefix: str) -> list[str]:
    """GATEWAY_ROUTES (JSON, one route a line) and GATEWAY_ACTIVE_SERVICES."""
    routes = (
        "[" + ",\n".join(json.dumps(r) for r in catalog.gateway_routes(_compose_upstream)) + "]"
    )
    active = json.dumps([service.name for service in catalog.routed()])
    return [
        f"{prefix}ROUTES: >-",
        *[f"  {line}" for line in routes.split("\n")],
        f"{prefix}ACTIVE_SERVICES: {_scalar(active)}",
    ]


def _environment_lines(catalog: Catalog, service: CatalogService) -> list[str]:
    lines = [] if service.gateway else ["<<: *amana-env"]
    lines += [f"{key}: {_scalar(value)}" for key, value in compose_environment(service).items()]
    if service.gateway:
        lines += _gateway_routing_lines(catalog, service.prefix)
    return lines


def _indented(lines: list[str], spaces: int) -> list[str]:
    return [" " * spaces + line if line else line for line in lines]


def _service_containers(catalog: Catalog, service: CatalogService) -> list[str]:
    name, slug = service.name, service.slug
    roles = (
        (["migrate"] if service.database else []) + ["api"] + (["worker"] if service.worker else [])
    )
    depends: list[str] = []
    if service.gateway:
        for routed in catalog.routed():
            depends += [f"{routed.slug}-api:", "  condition: service_healthy"]
    else:
        depends = ["<<: *infrastructure-ready"]
        if service.database:
            depends += [f"{slug}-migrate:", "  condition: service_completed_successfully"]
    lines = [f"# {'-' * 76} {slug}"]
    if service.gateway:
        lines += [
            "# The only Amana container published on the host, on loopback: in development it",
            "# hands out tokens to its built-in clients, whose secrets are public.",
        ]
    env_written = depends_written = False
    for role in roles:
        lines += [f"{slug}-{role}:", f"  <<: *amana-{role}", f'  command: ["{name}", "{role}"]']
        if env_written:
            lines.append(f"  environment: *{slug}-env")
        else:
            lines.append(f"  environment: &{slug}-env")
            lines += _indented(_environment_lines(catalog, service), 4)
            env_written = True
        if role == "migrate":
            continue
        if service.gateway:
            lines += ["  ports:", f'    - "127.0.0.1:{CONTAINER_PORT}:{CONTAINER_PORT}"']
        if depends_written:
            lines.append(f"  depends_on: *{slug}-depends")
        elif depends:
            lines.append(f"  depends_on: &{slug}-depends")
            lines += _indented(depends, 4)
            depends_written = True
    return lines


def compose_block(catalog: Catalog) -> list[str]:
    lines: list[str] = []
    for service in catalog.services:
        lines += [*_service_containers(catalog, service), ""]
    return _indented(lines[:-1], 2)


# --------------------------------------------------------------------------- compose support


def postgres_init_sql(catalog: Catalog) -> str:
    lines = [
        "-- Generated from services/catalog.toml by `make catalog`: edit the catalog instead.",
        "-- Runs once, when the compose PostgreSQL volume is first initialised",
        "-- (/docker-entrypoint-initdb.d): one database per service, owned by the compose user.",
        "-- After adding a service, `docker compose down -v` re-initialises the volume.",
        *[f"CREATE DATABASE {database};" for database in catalog.databases()],
    ]
    return "\n".join(lines) + "\n"


def dev_env_block(catalog: Catalog) -> list[str]:
    """Per service: its database URL on the compose server, the one JWT secret and the Kafka
    credentials from the host's environment (empty for compose's own broker)."""
    lines: list[str] = []
    for service in catalog.services:
        p = service.prefix
        lines.append(f"# {service.name}")
        if service.database_name:
            lines.append(
                f"{p}DATABASE_URL=postgresql+asyncpg://${{POSTGRES_USER}}:${{POSTGRES_PASSWORD}}"
                f"@postgres:5432/{service.database_name}"
            )
        lines.append(f"{p}JWT_SECRET=${{AMANA_JWT_SECRET}}")
        if not service.gateway:
            lines += [
                f"{p}KAFKA_{name}={_pass_through(f'AMANA_KAFKA_{name}', '')}"
                for name in KAFKA_SECRETS
            ]
        lines.append("")
    return lines[:-1]


# --------------------------------------------------------------------------- Helm


def helm_component(service: CatalogService) -> dict[str, Any]:
    component: dict[str, Any] = {}
    if service.development_only:
        component["enabled"] = False
    if service.module != service.slug:
        component["module"] = service.module
    if service.prefix != f"{service.slug.upper().replace('-', '_')}_":
        component["envPrefix"] = service.prefix
    component["database"] = (
        {"enabled": True, "name": service.database_name} if service.database else {"enabled": False}
    )
    component["env"] = {}
    if service.secret_env:
        component["secretEnv"] = {
            setting: {"key": service.secret_key(setting), "optional": need == "optional"}
            for setting, need in service.secret_env.items()
        }
    if service.routes:
        component["routes"] = [_helm_route(route.model_dump()) for route in service.routes]
    component["api"] = {
        "enabled": True,
        "replicas": 2,
        "port": CONTAINER_PORT,
        "service": {"type": "ClusterIP", "port": CONTAINER_PORT},
        "resources": copy.deepcopy(API_RESOURCES),
        "env": {},
    }
    component["worker"] = (
        {"enabled": True, "replicas": 1, "resources": copy.deepcopy(WORKER_RESOURCES), "env": {}}
        if service.worker
        else {"enabled": False}
    )
    for role, ports in service.outbound.items():
        component[role]["outboundPorts"] = list(ports)
    return component


def _helm_route(route: dict[str, Any]) -> dict[str, Any]:
    """The catalog's route in the chart's camelCase, without the unset limits."""
    names = {
        "prefix": "prefix",
        "upstream_prefix": "upstreamPrefix",
        "timeout_s": "timeoutS",
        "max_body_bytes": "maxBodyBytes",
        "public_paths": "publicPaths",
    }
    return {
        names[key]: list(value) if isinstance(value, tuple) else value
        for key, value in route.items()
        if value is not None and value != ()
    }


class _IndentedLists(yaml.SafeDumper):
    """Indents list items under their key, as the hand-written parts of values.yaml do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def helm_components_block(catalog: Catalog) -> list[str]:
    components = {service.slug: helm_component(service) for service in catalog.services}
    text = yaml.dump(
        components, Dumper=_IndentedLists, sort_keys=False, default_flow_style=False, width=100
    )
    return _indented(text.splitlines(), 2)


# --------------------------------------------------------------------------- files


def replace_block(text: str, block: list[str], where: Path) -> str:
    """`text` with the lines between its BEGIN and END markers replaced by `block`."""
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise CatalogError(f"{where} must hold one block between the lines {BEGIN!r} and {END!r}")
    return "\n".join([*lines[: starts[0] + 1], *block, *lines[ends[0] :]])


def _blocks(catalog: Catalog) -> dict[Path, Callable[[Catalog], list[str]]]:
    return {COMPOSE: compose_block, DEV_ENV: dev_env_block, HELM_VALUES: helm_components_block}


def generated_files(catalog: Catalog, root: Path) -> dict[Path, str]:
    """Every generated file (absolute path) and the text it must hold."""
    files = {root / POSTGRES_INIT: postgres_init_sql(catalog)}
    for relative, render in _blocks(catalog).items():
        path = root / relative
        files[path] = replace_block(path.read_text(encoding="utf-8"), render(catalog), relative)
    return files


def write_generated_files(catalog: Catalog, root: Path) -> list[Path]:
    written = []
    for path, text in generated_files(catalog, root).items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def stale_files(catalog: Catalog, root: Path) -> list[Path]:
    return [
        path
        for path, text in generated_files(catalog, root).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
