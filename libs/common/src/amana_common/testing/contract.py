"""API contract tests: schemathesis over every service's OpenAPI and the gateway's merged one.

Every service of the catalog (`services/catalog.toml`) is served with uvicorn on a free port
against its own migrated `amana_<service>_contract` database, authenticated with an admin
token; the gateway is served in front of every other service, each on its own port. The
schemathesis run is `st run --checks all --mode all` with the stateful phase: every check,
positive and negative data, links inferred from the response schemas and `Location` headers,
with a fixed seed and a bounded number of examples.

A service needs nothing to be covered. When its stateful testing needs more, it adds
`services/<name>/tests/contract.py` defining `CONTRACT = Contract(...)`: settings for the run,
the token's roles, and `prepare(client)`, which creates what the API cannot create by itself
(a parent object from another service, a fixture row) through the running API.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import json
import re
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from fastapi import FastAPI
from schemathesis.config._checks import (
    MISSING_REQUIRED_HEADER_EXPECTED_STATUSES as MISSING_HEADER_STATUSES,
)
from schemathesis.config._checks import (
    NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES as NEGATIVE_STATUSES,
)
from schemathesis.config._checks import (
    POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES as POSITIVE_STATUSES,
)

from amana_common.auth import Role
from amana_common.catalog import Catalog, CatalogService, load_catalog, service_entry
from amana_common.idempotency import HEADER as IDEMPOTENCY_KEY
from amana_common.settings import ServiceSettings
from amana_common.testing.clients import serving
from amana_common.testing.service import bearer

CONTRACT_SEED = 20250107
"""One seed for every run: a failure found once is found again, on every machine."""
MAX_EXAMPLES = 6
"""Examples per operation of the fuzzing phase (the coverage phase adds its boundary cases)."""
MAX_STATEFUL_STEPS = 6
STATEFUL_SCENARIOS = 6
JWT_SECRET = secrets.token_hex(32)
"""Signs the run's tokens; shared by every service and the gateway, as in a deployment."""


@dataclass(frozen=True)
class Contract:
    """What a service adds to its contract test (`CONTRACT` in its tests/contract.py)."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    """Settings of the service under test beyond the test defaults."""
    roles: tuple[Role, ...] = (Role.admin,)
    provider_id: UUID | None = None
    prepare: Callable[[httpx.Client], None] | None = None
    """Creates, through the running API, what the generated calls build on."""
    max_examples: int = MAX_EXAMPLES
    """Examples per operation of the fuzzing phase."""
    beyond_schema: Mapping[str, Collection[str]] = field(default_factory=dict)
    """Per operation ("POST /providers"), the fields whose rules JSON Schema cannot state: they
    depend on stored state, the clock or configuration (a location inside the provider's
    service areas, a date of birth not in the future, an allowlisted host). A schema-valid
    request refused with a 422 naming only these fields is not a contract failure; one naming
    any other field is. Write list positions as `*` (`location_codes.*`)."""
    beyond_schema_codes: Collection[str] = ()
    """The same for every operation, by the `code` a problem's error carries (a service whose
    validation names the rule it applied: `unknown-location`, `invalid-phone`)."""


def contract_of(service: str) -> Contract:
    """The service's `CONTRACT` from services/<name>/tests/contract.py, or the defaults."""
    try:
        module = importlib.import_module(f"services.{service}.tests.contract")
    except ModuleNotFoundError as error:
        wanted = f"services.{service}.tests.contract"
        if error.name is None or not wanted.startswith(error.name):
            raise  # contract.py exists but imports something missing
        return Contract()
    contract = getattr(module, "CONTRACT", None)
    if not isinstance(contract, Contract):
        raise TypeError(f"services/{service}/tests/contract.py must define CONTRACT = Contract()")
    return contract


def settings_of(
    service: CatalogService, database_url: str | None, kafka_bootstrap: str, **values: Any
) -> ServiceSettings:
    """Test settings of a cataloged service: its database, the test broker, the run's secret."""
    settings_class = service_entry(service.name).settings
    defaults: dict[str, Any] = {
        "environment": "test",
        "kafka_bootstrap": kafka_bootstrap,
        "jwt_secret": JWT_SECRET,
    }
    if database_url is not None:
        defaults["database_url"] = database_url
    settings: ServiceSettings = settings_class(
        **{**defaults, **contract_of(service.name).settings, **values}
    )
    return settings


def app_of(service: CatalogService, settings: ServiceSettings) -> FastAPI:
    return service_entry(service.name).app(settings)


def migrations_of(service: CatalogService) -> Path | None:
    return service_entry(service.name).migrations_dir


@dataclass(frozen=True)
class Served:
    """The service under test: its base URL, the headers its calls carry."""

    name: str
    url: str
    headers: dict[str, str]
    beyond_schema: Mapping[str, Collection[str]] = field(default_factory=dict)
    beyond_schema_codes: Collection[str] = ()
    max_examples: int = MAX_EXAMPLES


class BackgroundServers:
    """Serves apps with uvicorn on free loopback ports from an event loop of its own thread, so
    that synchronous callers (schemathesis) can call them while they run."""

    def __init__(self, apps: Mapping[str, Callable[[Mapping[str, str]], FastAPI]]) -> None:
        """`apps` in start order: each factory receives the URLs of the apps started before."""
        self._apps = apps
        self.urls: dict[str, str] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="contract-servers", daemon=True)

    def __enter__(self) -> dict[str, str]:
        self._thread.start()
        self._ready.wait(timeout=120)
        if self._error is not None:
            raise RuntimeError("the services under test did not start") from self._error
        if not self._ready.is_set():
            raise TimeoutError("the services under test did not start within 120 s")
        return self.urls

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            for name, factory in self._apps.items():
                self.urls[name] = await stack.enter_async_context(serving(factory(self.urls)))
            self._ready.set()
            await self._stop.wait()


@contextlib.contextmanager
def served_service(
    name: str,
    database_urls: Mapping[str, str],
    kafka_bootstrap: str,
    catalog: Catalog | None = None,
) -> Iterator[Served]:
    """Serves `name` (for the gateway: every other service, then the gateway in front)."""
    catalog = catalog or load_catalog()
    service = catalog.service(name)
    contract = contract_of(name)
    apps: dict[str, Callable[[Mapping[str, str]], FastAPI]] = {}
    if service.gateway:
        for upstream in catalog.routed():
            apps[upstream.name] = _upstream_factory(upstream, database_urls, kafka_bootstrap)
        apps[name] = lambda urls: app_of(
            service,
            settings_of(
                service,
                None,
                kafka_bootstrap,
                routes=catalog.gateway_routes(lambda upstream: urls[upstream.name]),
            ),
        )
    else:
        apps[name] = _upstream_factory(service, database_urls, kafka_bootstrap)
    with BackgroundServers(apps) as urls:
        settings = settings_of(service, database_urls.get(name), kafka_bootstrap)
        headers = bearer(settings, *contract.roles, provider_id=contract.provider_id)
        if contract.prepare is not None:
            with httpx.Client(base_url=urls[name], headers=headers, timeout=30) as client:
                contract.prepare(client)
        yield Served(
            name=name,
            url=urls[name],
            headers=headers,
            beyond_schema=beyond_schema_of(service),
            beyond_schema_codes=beyond_schema_codes_of(service),
            max_examples=contract.max_examples,
        )


def beyond_schema_codes_of(service: CatalogService) -> set[str]:
    """The service's `beyond_schema_codes`; for the gateway, every upstream's."""
    names = [s.name for s in load_catalog().routed()] if service.gateway else [service.name]
    return {code for name in names for code in contract_of(name).beyond_schema_codes}


def beyond_schema_of(
    service: CatalogService, catalog: Catalog | None = None
) -> dict[str, set[str]]:
    """The service's `beyond_schema`; for the gateway, every upstream's, at the gateway's paths."""
    if not service.gateway:
        return {op: set(fields) for op, fields in contract_of(service.name).beyond_schema.items()}
    catalog = catalog or load_catalog()
    found: dict[str, set[str]] = {}
    for upstream in catalog.routed():
        for operation, fields in contract_of(upstream.name).beyond_schema.items():
            method, path = operation.split(" ", 1)
            for route in upstream.routes:
                if path.startswith(route.upstream_prefix):
                    outside = f"{method} {route.prefix}{path[len(route.upstream_prefix) :]}"
                    found.setdefault(outside, set()).update(fields)
    return found


def _upstream_factory(
    service: CatalogService, database_urls: Mapping[str, str], kafka_bootstrap: str
) -> Callable[[Mapping[str, str]], FastAPI]:
    def factory(_: Mapping[str, str]) -> FastAPI:
        return app_of(
            service, settings_of(service, database_urls.get(service.name), kafka_bootstrap)
        )

    return factory


def schemathesis_config(served: Served) -> dict[str, Any]:
    """`st run --checks all --mode all` with the stateful phase, reproducible and bounded, as
    a schemathesis.toml would say it."""
    return {
        "seed": CONTRACT_SEED,
        "base-url": served.url,
        "headers": served.headers,
        "request-timeout": 30,
        "continue-on-failure": True,
        "cache": {"enabled": False},  # nothing learnt in one run steers the next
        "generation": {
            "mode": "all",
            "max-examples": served.max_examples,
            "deterministic": True,
            "database": "none",
            "unique-inputs": True,
        },
        "checks": {
            "enabled": True,
            # A request the schema calls valid may still meet a state it does not fit: a
            # conflict (409, already allowed) or a stale If-Match (412).
            # (413: a body over the deployment's size limit, which the schema does not know.)
            "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "412", "413"]},
            "negative_data_rejection": {"expected-statuses": [*NEGATIVE_STATUSES, "413"]},
            # RFC 6585: a missing precondition header (If-Match) is 428 Precondition Required.
            "missing_required_header": {"expected-statuses": [*MISSING_HEADER_STATUSES, "428"]},
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {
                "enabled": True,
                "max-steps": MAX_STATEFUL_STEPS,
                "generation": {"max-examples": STATEFUL_SCENARIOS},
            },
        },
    }


async def contract_database_urls(
    migrated: Callable[[str, Path, str], Any], catalog: Catalog | None = None
) -> AsyncIterator[dict[str, str]]:
    """A migrated `amana_<service>_contract` for every cataloged service with a database."""
    catalog = catalog or load_catalog()
    urls: dict[str, str] = {}
    for service in catalog.with_database():
        directory = migrations_of(service)
        if directory is not None:
            urls[service.name] = await migrated(service.name, directory, "contract")
    yield urls


@dataclass
class ContractReport:
    """What a schemathesis run found: each failure once, with the curl that reproduces it."""

    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    scenarios: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds per phase."""
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    """Per operation, how many responses of each status."""

    def problems(self) -> list[str]:
        return [*self.failures, *self.errors]


def run_contract(served: Served) -> ContractReport:
    """Runs schemathesis's engine, as `st run` does, against the served service."""
    import schemathesis
    from schemathesis import engine

    config = schemathesis.Config.from_dict(schemathesis_config(served))
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json", config=config)
    schema.hook(refusals_beyond_the_schema(served.beyond_schema, served.beyond_schema_codes))
    with fresh_idempotency_keys():
        return _report(engine.from_schema(schema).execute())


def refusals_beyond_the_schema(
    beyond: Mapping[str, Collection[str]], codes: Collection[str] = ()
) -> Callable[..., bool]:
    """A `filter_failure` hook dropping a schema-valid request's 422 when every error it names
    is one whose rule the schema cannot state (`Contract.beyond_schema`, `beyond_schema_codes`)."""
    from schemathesis.openapi.checks import RejectedPositiveData

    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        allowed = beyond.get(f"{case.method.upper()} {case.operation.path}", ())
        if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
            return True
        try:
            errors = [dict(error) for error in response.json().get("errors") or []]
        except (ValueError, TypeError, AttributeError):
            return True

        def excused(error: dict[str, Any]) -> bool:
            field_name = re.sub(r"\.\d+", ".*", str(error.get("field")))
            return field_name in allowed or error.get("code") in codes

        return not errors or not all(excused(error) for error in errors)

    return filter_failure


@contextlib.contextmanager
def fresh_idempotency_keys() -> Iterator[None]:
    """Gives every request whose headers are generated valid a new `Idempotency-Key`, as a
    client does for each new request: generated keys repeat ("0", "a"), and a key reused with
    another body is rightly a 422 (draft-ietf-httpapi-idempotency-key-header)."""
    import schemathesis
    from schemathesis.core.parameters import ParameterLocation
    from schemathesis.generation import GenerationMode
    from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

    keys = itertools.count()

    def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
        headers = case.headers or {}
        name = next((key for key in headers if key.lower() == IDEMPOTENCY_KEY.lower()), None)
        component = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
        if name is not None and component and component.mode == GenerationMode.POSITIVE:
            headers[name] = f"contract-{next(keys)}"

    schemathesis.hook(before_call)
    try:
        yield
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(before_call)


def _report(stream: Any) -> ContractReport:
    from schemathesis.engine import events

    report = ContractReport()
    seen: set[tuple[str, str, str, str]] = set()
    started: dict[str, float] = {}
    for event in stream:
        if isinstance(event, events.PhaseStarted):
            started[event.phase.name.value] = event.timestamp
        elif isinstance(event, events.PhaseFinished) and event.phase.name.value in started:
            name = event.phase.name.value
            report.seconds[name] = report.seconds.get(name, 0) + event.timestamp - started[name]
        if isinstance(event, events.ScenarioFinished):
            report.scenarios += 1
            _count_statuses(report, event.recorder)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    info = check.failure_info
                    if info is None:
                        continue
                    failure = info.failure
                    key = (
                        check.name,
                        failure.operation or event.recorder.label,
                        failure.title,
                        failure.message.splitlines()[0] if failure.message else "",
                    )
                    if key not in seen:
                        seen.add(key)
                        report.failures.append(
                            f"[{event.phase.value}] {check.name}: {key[1]}: {failure.title}\n"
                            f"    {failure.message.strip()}\n    {info.code_sample[:2000]}\n"
                            f"    -> {_answer(event.recorder, case_id)}"
                        )
        elif isinstance(event, events.NonFatalError):
            report.errors.append(f"error in {event.label}: {event.info.title}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            report.errors.append(f"fatal: {event.exception!r}")
    return report


def _answer(recorder: Any, case_id: str | None) -> str:
    interaction = recorder.interactions.get(case_id) if case_id else None
    if interaction is None or interaction.response is None:
        return "no response"
    response = interaction.response
    body = response.content[:400].decode("utf-8", "replace")
    try:
        named = [(e.get("field"), e.get("code")) for e in json.loads(response.content)["errors"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        named = []
    fields = f"\n    fields (and codes) refused: {named}" if named else ""
    return f"{response.status_code} {response.headers.get('content-type')} {body}{fields}"


def _count_statuses(report: ContractReport, recorder: Any) -> None:
    for case_id, interaction in recorder.interactions.items():
        if interaction.response is None or case_id not in recorder.cases:
            continue
        case = recorder.cases[case_id].value
        counts = report.statuses.setdefault(f"{case.method.upper()} {case.operation.path}", {})
        status = interaction.response.status_code
        counts[status] = counts.get(status, 0) + 1
