"""`python -m <service> api|worker|migrate|all`: one entry point per service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import uvicorn
import uvloop
from fastapi import FastAPI

from amana_common.app import health_router, kafka_readiness
from amana_common.db import Database, service_database
from amana_common.migrations import upgrade_to_head
from amana_common.observability import configure_logging
from amana_common.settings import ServiceSettings
from amana_common.tracing import setup_tracing, uninstall_tracing
from amana_common.worker import (
    Component,
    infrastructure_components,
    run_components,
    stop_on_signals,
)

S = TypeVar("S", bound=ServiceSettings)


@dataclass(frozen=True)
class ServiceEntry(Generic[S]):
    """A service's composition root, defined once in its main.py as `ENTRY`: what
    `python -m <service>` runs, and what the catalog's tests and tools find through
    `amana_common.catalog.service_entry(name)`.

    `components` makes the worker (default: the outbox relay and the pruner; None: no worker
    at all).
    `service_dir` holds alembic.ini and migrations/ (default: the folder two levels above the
    module defining `app`, services/<name>/, when it has an alembic.ini)."""

    name: str
    settings: Callable[[], S]
    app: Callable[[S], FastAPI]
    components: Callable[[S, Database], Sequence[Component]] | None = infrastructure_components
    service_dir: Path | None = None
    api_server: Callable[[FastAPI, ServiceSettings], Component] | None = None
    """Serves the API; `ApiServer` unless a service needs more (the PSP sandbox closes its
    port on request to simulate an outage)."""

    @property
    def migrations_dir(self) -> Path | None:
        """The folder holding alembic.ini, or None when the service has no database."""
        directory = self.service_dir or Path(inspect.getfile(self.app)).resolve().parents[2]
        return directory if (directory / "alembic.ini").is_file() else None


def main(entry: ServiceEntry[S], argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {entry.name}")
    parser.add_argument("command", choices=["api", "worker", "migrate", "all"])
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    settings = entry.settings()
    if args.host:
        settings.host = args.host
    if args.port:
        settings.port = args.port
    configure_logging(settings.log_level)
    if args.command == "migrate":
        if entry.migrations_dir is None:
            print(f"{entry.name} has no database to migrate")
            return 0
        upgrade_to_head(entry.migrations_dir, settings.database_url)
        return 0
    uvloop.run(
        _serve(
            entry,
            settings,
            api=args.command in ("api", "all"),
            worker=args.command in ("worker", "all"),
        )
    )
    return 0


async def _serve(entry: ServiceEntry[S], settings: S, *, api: bool, worker: bool) -> None:
    stop = asyncio.Event()
    # Before any engine exists (they are instrumented as they are created); spans still
    # pending are exported at exit.
    setup_tracing(settings, process_wide=True)
    components: list[Component] = []
    if api:
        serve_api = entry.api_server or ApiServer
        components.append(serve_api(entry.app(settings), settings))
    database = None
    if worker and entry.components is not None:
        database = service_database(settings, pool_size=5)
        components.extend(entry.components(settings, database))
    if worker and not api and settings.worker_probes:
        components.append(ApiServer(worker_probe_app(settings, database), settings))
    stop_on_signals(stop)
    # What is alive now (modules, the app, schemas: 150,000-200,000 objects) lives as long as
    # the process: kept out of the collector's full passes, which a webhook, a consumed batch
    # or an import chunk allocates enough to trigger, and which then walk only what it made.
    gc.collect()
    gc.freeze()
    try:
        await run_components(components, stop)
    finally:
        if database is not None:
            await database.dispose()
        uninstall_tracing()


def worker_probe_app(settings: ServiceSettings, database: Database | None) -> FastAPI:
    """What a lone worker answers on host:port: /healthz (its event loop turns), /readyz (its
    database and, when the service uses one, Kafka answer) and /metrics (its outbox and
    consumer metrics)."""
    app = FastAPI(title=f"{settings.service_name} worker", openapi_url=None, docs_url=None)
    app.state.settings = settings
    app.state.database = database
    kafka = kafka_readiness if settings.uses_kafka else None
    app.include_router(health_router(database is not None, kafka))
    return app


class _ServerWithoutSignals(uvicorn.Server):
    """The worker owns SIGTERM/SIGINT and stops the API through `should_exit`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """uvicorn serving the app until `stop` is set; when it stops by itself it sets `stop`."""

    def __init__(self, app: FastAPI, settings: ServiceSettings) -> None:
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            proxy_headers=settings.server_proxy_headers,
        )
        self.server = _ServerWithoutSignals(config)

    async def run(self, stop: asyncio.Event) -> None:
        serving = asyncio.create_task(self.server.serve())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        self.server.should_exit = True
        await serving
        stopping.cancel()
        stop.set()
