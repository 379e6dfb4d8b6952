"""The catalog of services (services/catalog.toml): the one source for everything outside a
service's folder that names it. What can read it reads it (the gateway's default routes, topic
creation, the local scripts, the Makefile, the tests); what cannot is generated from it
(`python -m amana_common.catalog generate`, see `amana_common.catalog_files`).

    python -m amana_common.catalog start-order     # registry:8101 provider:8102 gateway:8000
    python -m amana_common.catalog databases       # amana_registry amana_provider
    python -m amana_common.catalog generate        # rewrite the generated deployment files
    python -m amana_common.catalog check           # fail when they are stale
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import re
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from amana_common.cli import ServiceEntry
    from amana_common.settings import ServiceSettings

CATALOG_ENV = "AMANA_CATALOG"
CATALOG_RELATIVE_PATH = Path("services") / "catalog.toml"
SHARED_PACKAGES = ("amana_common", "amana_contracts")
EVENTS_SUFFIX = ".events"


class CatalogError(Exception):
    """The catalog is missing or says something inconsistent."""


class CatalogRoute(BaseModel):
    """What the gateway sends to a service: `prefix` at the gateway goes to the service's
    `upstream_prefix` + the rest of the path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(pattern=r"^/[a-z0-9-]+$")
    upstream_prefix: str = Field(default="", pattern=r"^(/[a-z0-9_-]+)*$")
    timeout_s: float | None = Field(default=None, gt=0, le=600)
    max_body_bytes: int | None = Field(default=None, gt=0)
    public_paths: tuple[str, ...] = ()

    @field_validator("public_paths")
    @classmethod
    def _regular_expressions(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            try:
                re.compile(path)
            except re.error as error:
                raise ValueError(f"public path {path!r}: {error}") from error
        return paths

    def gateway_route(self, service: str, upstream: str) -> dict[str, Any]:
        """The route as the gateway's configuration spells it (`GATEWAY_ROUTES`); unset limits
        are left to the gateway's defaults."""
        route: dict[str, Any] = {
            "prefix": self.prefix,
            "service": service,
            "upstream": upstream,
            "upstream_prefix": self.upstream_prefix,
        }
        if self.timeout_s is not None:
            route["timeout_s"] = self.timeout_s
        if self.max_body_bytes is not None:
            route["max_body_bytes"] = self.max_body_bytes
        if self.public_paths:
            route["public_paths"] = list(self.public_paths)
        return route


class CatalogService(BaseModel):
    """One service. Its name is its Python package, its folder and its `python -m` module."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*[a-z0-9]$", max_length=40)
    description: str = ""
    port: int = Field(ge=1024, le=65535)
    database: bool = False
    env_prefix: str = Field(default="", pattern=r"^([A-Z][A-Z0-9_]*_)?$")
    worker: bool = False
    gateway: bool = False
    development_only: bool = False
    publishes: tuple[str, ...] = ()
    consumes: tuple[str, ...] = ()
    routes: tuple[CatalogRoute, ...] = ()
    compose_env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, Literal["required", "optional"]] = Field(default_factory=dict)
    outbound: dict[Literal["api", "worker"], tuple[int, ...]] = Field(default_factory=dict)

    @field_validator("secret_env")
    @classmethod
    def _setting_names(
        cls, env: dict[str, Literal["required", "optional"]]
    ) -> dict[str, Literal["required", "optional"]]:
        for name in env:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                raise ValueError(f"secret_env: {name!r} is not a setting name (SECRETS_KEY)")
        return env

    @field_validator("outbound")
    @classmethod
    def _ports(
        cls, outbound: dict[Literal["api", "worker"], tuple[int, ...]]
    ) -> dict[Literal["api", "worker"], tuple[int, ...]]:
        for role, ports in outbound.items():
            if not ports or not all(1 <= port <= 65535 for port in ports):
                raise ValueError(f"outbound.{role}: a list of TCP ports, e.g. [443]")
        return outbound

    @field_validator("compose_env")
    @classmethod
    def _variable_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                raise ValueError(f"compose_env: {name!r} is not an environment variable name")
        return env

    @model_validator(mode="after")
    def _consistent(self) -> CatalogService:
        own_topic = f"{self.name}{EVENTS_SUFFIX}"
        if set(self.publishes) - {own_topic}:
            raise ValueError(f"{self.name} publishes through its outbox to {own_topic} only")
        if (self.publishes or self.consumes) and not self.worker:
            raise ValueError(f"{self.name} publishes or consumes, so it needs worker = true")
        if self.worker and not self.database:
            raise ValueError(f"{self.name}'s worker needs database = true (outbox, inbox)")
        if self.gateway and (self.database or self.worker or self.routes):
            raise ValueError("the gateway has no database, no worker and no routes of its own")
        if "worker" in self.outbound and not self.worker:
            raise ValueError(f"{self.name} has no worker: outbound.worker cannot apply")
        return self

    def secret_key(self, setting: str) -> str:
        """The key of a `secret_env` setting in the deployment's Secret:
        disbursement-secrets-key for disbursement's SECRETS_KEY."""
        return f"{self.slug}-{setting.lower().replace('_', '-')}"

    @property
    def module(self) -> str:
        return self.name

    @property
    def slug(self) -> str:
        """Its name where `_` is not allowed: compose services, Kubernetes resources."""
        return self.name.replace("_", "-")

    @property
    def prefix(self) -> str:
        return self.env_prefix or f"{self.name.upper()}_"

    @property
    def database_name(self) -> str | None:
        return f"amana_{self.name}" if self.database else None

    @property
    def uses_kafka(self) -> bool:
        return bool(self.worker or self.publishes or self.consumes)


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    services: tuple[CatalogService, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        _refuse_duplicates("service name", [s.slug for s in self.services])
        _refuse_duplicates("port", [s.port for s in self.services])
        _refuse_duplicates("env_prefix", [s.prefix for s in self.services])
        _refuse_duplicates("route prefix", [r.prefix for s in self.services for r in s.routes])
        gateways = [s.name for s in self.services if s.gateway]
        if len(gateways) != 1:
            raise ValueError(f"exactly one service must have gateway = true, not {gateways}")
        if not self.services[-1].gateway:
            raise ValueError("the gateway starts last: put its table at the end")
        published = set(self.published_topics())
        for service in self.services:
            if unknown := set(service.consumes) - published:
                raise ValueError(
                    f"{service.name} consumes {sorted(unknown)}, which no one publishes"
                )
        return self

    def service(self, name: str) -> CatalogService:
        for service in self.services:
            if service.name == name:
                return service
        raise CatalogError(f"no service {name!r} in the catalog")

    def names(self) -> list[str]:
        return [service.name for service in self.services]

    @property
    def gateway(self) -> CatalogService:
        return next(service for service in self.services if service.gateway)

    def with_database(self) -> list[CatalogService]:
        return [service for service in self.services if service.database]

    def databases(self) -> list[str]:
        return [service.database_name for service in self.services if service.database_name]

    def published_topics(self) -> list[str]:
        return [topic for service in self.services for topic in service.publishes]

    def routed(self) -> list[CatalogService]:
        return [service for service in self.services if service.routes]

    def gateway_routes(self, upstream: Callable[[CatalogService], str]) -> list[dict[str, Any]]:
        """Every route, to the address `upstream` gives each service."""
        return [
            route.gateway_route(service.name, upstream(service))
            for service in self.routed()
            for route in service.routes
        ]


def _refuse_duplicates(what: str, values: Sequence[object]) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"two services share the {what} {value!r}")
        seen.add(value)


def catalog_path() -> Path:
    """`AMANA_CATALOG`, else services/catalog.toml of the checkout (or image) this package is
    installed from, else of the working directory's."""
    if explicit := os.environ.get(CATALOG_ENV):
        return Path(explicit)
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for directory in (start, *start.parents):
            if (directory / CATALOG_RELATIVE_PATH).is_file():
                return directory / CATALOG_RELATIVE_PATH
    raise CatalogError(f"{CATALOG_RELATIVE_PATH} not found: set {CATALOG_ENV} to its path")


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or catalog_path()
    try:
        stat = path.stat()
    except OSError as error:
        raise CatalogError(f"{path}: {error}") from error
    return _load(path, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _load(path: Path, mtime_ns: int, size: int) -> Catalog:
    """Read once per version of the file (`mtime_ns` and `size` key the cache)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CatalogError(f"{path}: {error}") from error
    tables = document.get("services")
    if set(document) != {"services"} or not isinstance(tables, dict):
        raise CatalogError(f"{path}: expected [services.<name>] tables and nothing else")
    try:
        return Catalog(services=tuple({**table, "name": name} for name, table in tables.items()))
    except ValidationError as error:
        raise CatalogError(f"{path}: {error}") from error


def repository_root(path: Path | None = None) -> Path:
    """The directory holding services/catalog.toml."""
    return (path or catalog_path()).resolve().parents[1]


def service_entry(name: str) -> ServiceEntry[Any]:
    """The `ENTRY` of a service's main module: its settings, app, worker and migrations."""
    from amana_common.cli import ServiceEntry

    entry = getattr(importlib.import_module(f"{name}.main"), "ENTRY", None)
    if not isinstance(entry, ServiceEntry):
        raise CatalogError(f"{name}.main must define ENTRY = ServiceEntry(...)")
    return entry


def _settings_class(entry: ServiceEntry[Any]) -> type[ServiceSettings]:
    """The settings class itself: instantiating it could refuse its defaults (production)."""
    from amana_common.settings import ServiceSettings

    factory = entry.settings
    if isinstance(factory, type) and issubclass(factory, ServiceSettings):
        return factory
    instance = factory()
    if not isinstance(instance, ServiceSettings):
        raise CatalogError(f"{entry.name}: ENTRY.settings makes no ServiceSettings")
    return type(instance)


# --------------------------------------------------------------------------- command line


def _print_lines(lines: Sequence[str]) -> None:
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    commands: dict[str, tuple[str, Callable[[Catalog, argparse.Namespace], int]]] = {
        "services": ("service names, in start order", _services),
        "start-order": ("name:port per service, in start order (services.sh)", _start_order),
        "databases": ("the database of every service that has one (pg.sh)", _databases),
        "topics": ("the topics services publish", _topics),
        "mypy-packages": ("-p arguments for mypy: shared libraries and services", _mypy),
        "summary": ("one line: every service and its local port", _summary),
        "generate": ("rewrite the files generated from the catalog", _generate),
        "check": ("fail when a generated file or a service's ENTRY disagrees", _check),
        "new": ("create services/<name>/ and its catalog entry, then generate", _new),
    }
    parser = argparse.ArgumentParser(
        prog="python -m amana_common.catalog", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--catalog", type=Path, help=f"default: ${CATALOG_ENV} or the checkout's")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _) in commands.items():
        command = sub.add_parser(name, help=help_text)
        if name == "new":
            command.add_argument("name", help="the Python package, e.g. payroll")
            command.add_argument("--port", type=int, required=True, help="its local port")
            command.add_argument("--description", default="to be described")
    args = parser.parse_args(argv)
    try:
        catalog = load_catalog(args.catalog.resolve() if args.catalog else None)
        return commands[args.command][1](catalog, args)
    except CatalogError as error:
        print(f"catalog: {error}", file=sys.stderr)
        return 2


def _services(catalog: Catalog, _: argparse.Namespace) -> int:
    _print_lines(catalog.names())
    return 0


def _start_order(catalog: Catalog, _: argparse.Namespace) -> int:
    _print_lines([f"{service.name}:{service.port}" for service in catalog.services])
    return 0


def _databases(catalog: Catalog, _: argparse.Namespace) -> int:
    _print_lines(catalog.databases())
    return 0


def _topics(catalog: Catalog, _: argparse.Namespace) -> int:
    _print_lines(catalog.published_topics())
    return 0


def _mypy(catalog: Catalog, _: argparse.Namespace) -> int:
    print(" ".join(f"-p {package}" for package in (*SHARED_PACKAGES, *catalog.names())))
    return 0


def _summary(catalog: Catalog, _: argparse.Namespace) -> int:
    print(", ".join(f"{service.name} :{service.port}" for service in catalog.services))
    return 0


def _root(args: argparse.Namespace) -> Path:
    return repository_root(args.catalog.resolve() if args.catalog else None)


def _generate(catalog: Catalog, args: argparse.Namespace) -> int:
    from amana_common.catalog_files import write_generated_files

    root = _root(args)
    for path in write_generated_files(catalog, root):
        print(f"wrote {path.relative_to(root)}")
    return 0


def _check(catalog: Catalog, args: argparse.Namespace) -> int:
    from amana_common.catalog_files import stale_files

    root = _root(args)
    problems = [
        f"{path.relative_to(root)} differs from the catalog: run `make catalog`"
        for path in stale_files(catalog, root)
    ] + entry_disagreements(catalog)
    _print_lines(problems)
    return 1 if problems else 0


def _new(catalog: Catalog, args: argparse.Namespace) -> int:
    from amana_common.catalog_files import write_generated_files
    from amana_common.scaffold import create_service

    root = _root(args)
    catalog_file = root / CATALOG_RELATIVE_PATH
    written = create_service(catalog_file, args.name, args.port, args.description)
    written += write_generated_files(load_catalog(catalog_file), root)
    _print_lines([f"wrote {path.relative_to(root)}" for path in written])
    print(f"next: `uv lock` (the workspace gains amana-{args.name.replace('_', '-')}), then edit")
    print(f"the [services.{args.name}] table (routes, topics) and run `make catalog` again")
    return 0


def entry_disagreements(catalog: Catalog) -> list[str]:
    """Where a service's own code (its ENTRY and settings) says otherwise than the catalog."""
    problems = []
    for service in catalog.services:
        try:
            entry = service_entry(service.name)
        except (ImportError, CatalogError) as error:
            problems.append(f"{service.name}: {error}")
            continue
        settings = _settings_class(entry)
        fields = settings.model_fields
        found = {
            "ENTRY.name": (entry.name, service.name),
            "settings.service_name": (fields["service_name"].default, service.name),
            "settings env prefix": (settings.model_config.get("env_prefix"), service.prefix),
            "settings.port": (fields["port"].default, service.port),
            "settings.has_database": (settings.has_database, service.database),
            "alembic.ini": (entry.migrations_dir is not None, service.database),
            "a worker (ENTRY.components)": (entry.components is not None, service.worker),
        }
        found |= {
            f"secret_env {name}, a setting": (name.lower() in fields, True)
            for name in service.secret_env
        }
        problems += [
            f"{service.name}: {what} is {actual!r}, the catalog says {expected!r}"
            for what, (actual, expected) in found.items()
            if actual != expected
        ]
    return problems


if __name__ == "__main__":
    sys.exit(main())
