"""The Helm chart (deploy/helm/amana), linted and rendered by a real `helm`.

helm comes from deploy/tools/ensure-helm.sh (PATH, else .local/bin, else built with Go):
when it cannot be had, these tests fail rather than skip.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from gateway.settings import GatewaySettings
from provider.settings import ProviderSettings

from .conftest import CATALOG, SERVICES_WITH_DATABASE, LoadSettings, env_prefix

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "amana"
RELEASE = "amana"
APP_UID = 10001
SERVICE_LABEL = "amana.io/service"
# Generated: the services refuse any secret that was ever committed to the repository.
JWT_SECRET = secrets.token_urlsafe(32)
DATABASE_PASSWORD = secrets.token_urlsafe(24)
JWKS_URL = "https://id.example/.well-known/jwks.json"
# What a release must be given at least: the chart refuses to render without a JWT secret (or
# an identity provider's JWKS) and, in production (its default), without a database password.
# And the services' required secret settings (secret_env), given to the chart's own Secret.
SECRET_SETTINGS = tuple(
    argument
    for service in CATALOG.services
    for setting, need in service.secret_env.items()
    if need == "required" and not service.development_only
    for argument in (
        "--set",
        f"secrets.values.{service.secret_key(setting)}="
        + base64.b64encode(secrets.token_bytes(32)).decode(),
    )
)
REQUIRED = (
    "--set",
    f"secrets.jwtSecret={JWT_SECRET}",
    "--set",
    f"database.password={DATABASE_PASSWORD}",
    *SECRET_SETTINGS,
)
CLIENT_SECRET_HASH = "pbkdf2_sha256$1000$c2FsdA$aGFzaA"
GATEWAY_CLIENT: dict[str, Any] = {
    "client_id": "ops-console",
    "secret_hash": CLIENT_SECRET_HASH,
    "roles": ["registrar"],
    "provider_id": None,
}
DEPLOYED = [service for service in CATALOG.services if not service.development_only]
DEPLOYMENTS = {
    f"{RELEASE}-{service.slug}-{role}"
    for service in DEPLOYED
    for role in ("api", "worker")
    if role == "api" or service.worker
}
MIGRATION_JOBS = {f"{RELEASE}-{service.slug}-migrate" for service in DEPLOYED if service.database}
TOPICS_JOB = f"{RELEASE}-kafka-topics"
TOPICS_COMPONENT = "kafka-topics"
DEPLOYED_WITH_DATABASE = {service.name: service.slug for service in DEPLOYED if service.database}
# A service added later, as a components entry.
PAYROLL = {
    "database": {"enabled": True},
    "routes": [{"prefix": "/payroll", "publicPaths": ["^/callbacks/.*"], "timeoutS": 120}],
    "api": {"enabled": True, "replicas": 2},
    "worker": {"enabled": True, "replicas": 1},
}
# GATEWAY_ROUTES by prefix: (service, upstream api Service, upstream_prefix), as the catalog says.
ROUTES = {
    route.prefix: (service.module, f"{RELEASE}-{service.slug}-api", route.upstream_prefix)
    for service in DEPLOYED
    for route in service.routes
}
KAFKA_TLS = "/etc/amana/kafka-tls"

Doc = dict[str, Any]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, *args], capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT
    )


def template(
    helm: str, *extra: str, given: tuple[str, ...] = REQUIRED
) -> subprocess.CompletedProcess[str]:
    """`helm template` with the `given` values (REQUIRED unless told otherwise), then `extra`."""
    return run_helm(helm, "template", RELEASE, str(CHART), "--namespace", "amana", *given, *extra)


def render(helm: str, *extra: str, given: tuple[str, ...] = REQUIRED) -> list[Doc]:
    result = template(helm, *extra, given=given)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def refused(helm: str, *extra: str, given: tuple[str, ...] = REQUIRED) -> str:
    """helm's error when it must refuse to render with these values."""
    result = template(helm, *extra, given=given)
    assert result.returncode != 0, "helm rendered values it should refuse"
    return result.stderr


def render_values(
    helm: str, tmp_path: Path, values: dict[str, Any], given: tuple[str, ...] = REQUIRED
) -> list[Doc]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return render(helm, "--values", str(path), given=given)


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def names(docs: list[Doc], kind: str) -> set[str]:
    return {doc["metadata"]["name"] for doc in of_kind(docs, kind)}


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def containers(docs: list[Doc]) -> Iterator[tuple[str, str, Doc]]:
    """(where, component, container) of every Deployment and Job of a service (the topic
    creator excepted)."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            component = doc["spec"]["template"]["metadata"]["labels"][SERVICE_LABEL]
            if component == TOPICS_COMPONENT:
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield f"{doc['kind']}/{doc['metadata']['name']}", component, container


def container_of(docs: list[Doc], deployment: str) -> Doc:
    container: Doc = named(docs, "Deployment", deployment)["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def env_of(container: Doc) -> dict[str, Doc]:
    return {entry["name"]: entry for entry in container.get("env") or []}


def secret_data(secret: Doc) -> dict[str, str]:
    data = {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}
    return data | (secret.get("stringData") or {})


def secret_values(docs: list[Doc]) -> set[str]:
    """What the Secrets hold, user names (not secret) excepted."""
    return {
        value
        for secret in of_kind(docs, "Secret")
        for key, value in secret_data(secret).items()
        if not key.endswith("-username")
    }


def chart_secret(docs: list[Doc]) -> Doc:
    """The release's Secret (not the migrations' hook copy)."""
    (secret,) = [
        s
        for s in of_kind(docs, "Secret")
        if "helm.sh/hook" not in s["metadata"].get("annotations", {})
    ]
    return secret


def environment_of(docs: list[Doc], container: Doc) -> dict[str, str]:
    """What the container's process sees, its Secret references resolved."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        environment |= named(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    for entry in container.get("env") or []:
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        data = secret_data(named(docs, "Secret", ref["name"]))
        if ref["key"] in data or not ref.get("optional"):
            environment[entry["name"]] = data[ref["key"]]
    return environment


def gateway_config(docs: list[Doc]) -> dict[str, str]:
    config: dict[str, str] = named(docs, "ConfigMap", f"{RELEASE}-gateway")["data"]
    return config


def gateway_routes(docs: list[Doc]) -> dict[str, Doc]:
    routes = json.loads(gateway_config(docs)["GATEWAY_ROUTES"])
    assert isinstance(routes, list)
    return {route["prefix"]: route for route in routes}


def service_ports(docs: list[Doc], service: str) -> set[int]:
    return {port["port"] for port in named(docs, "Service", service)["spec"]["ports"]}


@pytest.fixture(scope="module")
def default_docs(helm: str) -> list[Doc]:
    return render(helm)


PRODUCTION = (
    "--set",
    "global.environment=production",
    "--set",
    "secrets.existingSecret=amana-prod-secrets",
)


@pytest.fixture(scope="module")
def production_docs(helm: str) -> list[Doc]:
    return render(helm, *PRODUCTION, given=())


@pytest.fixture(scope="module")
def configured_docs(helm: str, tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    """A development release with every optional setting given."""
    values = {
        "global": {"environment": "development"},
        "secrets": {
            "jwtSecret": JWT_SECRET,
            "gatewayClients": [GATEWAY_CLIENT],
        },
        "database": {"password": "database-password-under-test"},
        "provider": {"allowedApiHosts": ["api.psp.example", "*.mpesa.example"]},
        "gateway": {
            "corsOrigins": ["https://console.example"],
            "rateLimit": {"perSecond": 50, "burst": 80},
            "trustedProxies": ["10.42.0.0/16"],
            "publicBaseUrl": "https://api.amana.example",
        },
    }
    return render_values(helm, tmp_path_factory.mktemp("configured"), values, given=())


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_chart_lints(helm: str, strict: bool) -> None:
    args = ["lint", str(CHART), *REQUIRED] + (["--strict"] if strict else [])
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_chart_lints_strict_in_production(helm: str) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- workloads


def test_deployments_are_the_services_apis_and_workers(default_docs: list[Doc]) -> None:
    assert names(default_docs, "Deployment") == DEPLOYMENTS
    components = {component for _, component, _ in containers(default_docs)}
    assert components == {service.name for service in DEPLOYED}
    for name in DEPLOYMENTS:
        component, role = name.removeprefix(f"{RELEASE}-").rsplit("-", 1)
        assert container_of(default_docs, name)["args"] == [component, role]
        replicas = named(default_docs, "Deployment", name)["spec"].get("replicas")
        # An api's replicas are its HorizontalPodAutoscaler's.
        assert replicas >= 1 if role == "worker" else replicas is None


def test_gateway_has_no_worker_migration_or_database(default_docs: list[Doc]) -> None:
    assert not any("gateway-worker" in name for name in names(default_docs, "Deployment"))
    assert not any("gateway" in name for name in names(default_docs, "Job"))
    for secret in of_kind(default_docs, "Secret"):
        assert "gateway-database-password" not in secret.get("data", {})
    assert "GATEWAY_DATABASE_URL" not in env_of(
        container_of(default_docs, f"{RELEASE}-gateway-api")
    )


@pytest.mark.parametrize("service", sorted(DEPLOYED_WITH_DATABASE))
def test_api_and_worker_pods_are_told_apart(default_docs: list[Doc], service: str) -> None:
    api = named(default_docs, "Deployment", f"{RELEASE}-{DEPLOYED_WITH_DATABASE[service]}-api")
    worker = named(
        default_docs, "Deployment", f"{RELEASE}-{DEPLOYED_WITH_DATABASE[service]}-worker"
    )
    # Selectors must tell api and worker pods apart, or the Service would hit the worker.
    assert api["spec"]["selector"]["matchLabels"] != worker["spec"]["selector"]["matchLabels"]
    for deployment in (api, worker):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def api_deployments(docs: list[Doc]) -> list[Doc]:
    return [doc for doc in of_kind(docs, "Deployment") if doc["metadata"]["name"].endswith("-api")]


def test_api_probes_use_healthz_and_readyz(default_docs: list[Doc]) -> None:
    for api in api_deployments(default_docs):
        container = api["spec"]["template"]["spec"]["containers"][0]
        port_names = {port["name"] for port in container["ports"]}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] in port_names


def test_api_services_select_only_their_api_pods(default_docs: list[Doc]) -> None:
    assert names(default_docs, "Service") == {
        doc["metadata"]["name"] for doc in api_deployments(default_docs)
    }
    for api in api_deployments(default_docs):
        service = named(default_docs, "Service", api["metadata"]["name"])
        selector = service["spec"]["selector"].items()
        for deployment in of_kind(default_docs, "Deployment"):
            selected = selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
            assert selected == (deployment is api), deployment["metadata"]["name"]
        container = api["spec"]["template"]["spec"]["containers"][0]
        port_names = {port["name"] for port in container["ports"]}
        assert all(port["targetPort"] in port_names for port in service["spec"]["ports"])
        assert service["spec"]["type"] == "ClusterIP"


def test_workers_serve_their_probes_but_no_service(default_docs: list[Doc]) -> None:
    workers = [name for name in DEPLOYMENTS if name.endswith("-worker")]
    assert workers
    for name in workers:
        container = container_of(default_docs, name)
        component = name.removeprefix(f"{RELEASE}-").removesuffix("-worker")
        assert env_of(container)[f"{env_prefix(component)}WORKER_PROBES"]["value"] == "true"
        assert [port["name"] for port in container["ports"]] == ["http"]
        assert name not in names(default_docs, "Service")


def test_containers_run_as_non_root_with_read_only_root(default_docs: list[Doc]) -> None:
    specs = list(pod_specs(default_docs))
    assert len(specs) == len(DEPLOYMENTS) + len(MIGRATION_JOBS) + 1  # the topic creator
    for where, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] == APP_UID, where
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["runAsUser"] == APP_UID, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert "ALL" in context["capabilities"]["drop"], where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: /tmp is not an emptyDir"


def test_workloads_read_their_configmap_and_the_secret(default_docs: list[Doc]) -> None:
    secret = chart_secret(default_docs)["metadata"]["name"]
    for where, component, container in containers(default_docs):
        if where.startswith("Job/"):
            continue
        refs = {source["configMapRef"]["name"] for source in container["envFrom"]}
        assert refs == {f"{RELEASE}-{component}"}, where
        prefix = env_prefix(component)
        config = named(default_docs, "ConfigMap", f"{RELEASE}-{component}")["data"]
        assert config[f"{prefix}HOST"] == "0.0.0.0"
        assert config[f"{prefix}PORT"] == "8000"
        assert config[f"{prefix}ENVIRONMENT"] == "production"
        assert config[f"{prefix}KAFKA_BOOTSTRAP"] == config["AMANA_KAFKA_BOOTSTRAP"]
        env = env_of(container)
        if component in SERVICES_WITH_DATABASE:
            assert config[f"{prefix}DATABASE_URL"] == (
                f"postgresql+asyncpg://postgres:5432/amana_{component}"
            )
            for field in ("USER", "PASSWORD"):
                assert env[f"{prefix}DATABASE_{field}"]["valueFrom"]["secretKeyRef"] == {
                    "name": secret,
                    "key": f"{component}-database-{'username' if field == 'USER' else 'password'}",
                }, where
        else:
            assert f"{prefix}DATABASE_URL" not in config, where
            assert f"{prefix}DATABASE_PASSWORD" not in env, where


def test_services_accept_their_environment(
    configured_docs: list[Doc], load_settings: LoadSettings
) -> None:
    for where, component, container in containers(configured_docs):
        settings = load_settings(component, environment_of(configured_docs, container))
        assert settings.jwt_secret == JWT_SECRET, where
        assert settings.port == 8000, where
        if component in SERVICES_WITH_DATABASE:
            url = make_url(settings.database_url)
            assert url.database == f"amana_{component}", where
            assert (url.username, url.password) == ("amana", "database-password-under-test")
        if isinstance(settings, ProviderSettings):
            assert settings.allowed_api_hosts == ["api.psp.example", "*.mpesa.example"]
        if isinstance(settings, GatewaySettings):
            assert [client.client_id for client in settings.clients] == ["ops-console"]
            assert settings.cors_origins == ["https://console.example"]
            assert (settings.rate_limit_per_s, settings.rate_limit_burst) == (50, 80)
            assert settings.trusted_proxies == [IPv4Network("10.42.0.0/16")]
            assert settings.public_base_url == "https://api.amana.example"
            assert {route.prefix for route in settings.deployed_routes()} == ROUTES.keys()


def test_service_account_is_created_and_used(default_docs: list[Doc]) -> None:
    (account,) = of_kind(default_docs, "ServiceAccount")
    for deployment in of_kind(default_docs, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == account["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False


# --------------------------------------------------------------------------- gateway


def test_gateway_routes_to_each_api_service(default_docs: list[Doc]) -> None:
    routes = gateway_routes(default_docs)
    assert routes.keys() == ROUTES.keys()
    for prefix, (service, api_service, upstream_prefix) in ROUTES.items():
        route = routes[prefix]
        assert route["service"] == service
        assert route["upstream"] == f"http://{api_service}:8000"
        assert route["upstream_prefix"] == upstream_prefix
        assert 8000 in service_ports(default_docs, api_service)
        selector = named(default_docs, "Service", api_service)["spec"]["selector"]
        assert selector[SERVICE_LABEL] == service
        assert selector["app.kubernetes.io/component"] == "api"
    active = json.loads(gateway_config(default_docs)["GATEWAY_ACTIVE_SERVICES"])
    assert sorted(active) == sorted({service for service, _, _ in ROUTES.values()})
    assert {"/registry", "/providers", "/pay-points", "/lookup"} <= routes.keys()


def test_routes_follow_the_deployed_apis(helm: str, tmp_path: Path) -> None:
    without_apis = {
        name: {"api": {"enabled": False}} for name in ("provider", "disbursement", "analytics")
    }
    docs = render_values(helm, tmp_path, {"components": {"payroll": PAYROLL} | without_apis})
    routes = gateway_routes(docs)
    assert routes.keys() == {"/registry", "/payroll"}
    assert routes["/payroll"] == {
        "prefix": "/payroll",
        "service": "payroll",
        "upstream": f"http://{RELEASE}-payroll-api:8000",
        "upstream_prefix": "",
        "timeout_s": 120,
        "public_paths": ["^/callbacks/.*"],
    }
    active = json.loads(gateway_config(docs)["GATEWAY_ACTIVE_SERVICES"])
    assert sorted(active) == ["payroll", "registry"]


def test_gateway_settings_reach_its_configmap(configured_docs: list[Doc]) -> None:
    config = gateway_config(configured_docs)
    assert json.loads(config["GATEWAY_CORS_ORIGINS"]) == ["https://console.example"]
    assert config["GATEWAY_RATE_LIMIT_PER_S"] == "50"
    assert config["GATEWAY_RATE_LIMIT_BURST"] == "80"
    provider = named(configured_docs, "ConfigMap", f"{RELEASE}-provider")["data"]
    assert provider["PROVIDER_ALLOWED_API_HOSTS"] == "api.psp.example,*.mpesa.example"


def test_jwks_url_reaches_every_component(helm: str) -> None:
    docs = render(helm, "--set", f"global.jwksUrl={JWKS_URL}")
    for config_map in of_kind(docs, "ConfigMap"):
        component = config_map["metadata"]["name"].removeprefix(f"{RELEASE}-")
        assert config_map["data"][f"{env_prefix(component)}JWKS_URL"] == JWKS_URL


# --------------------------------------------------------------------------- migrations


def test_migration_jobs_only_for_services_with_a_database(default_docs: list[Doc]) -> None:
    assert names(default_docs, "Job") == MIGRATION_JOBS | {TOPICS_JOB}


@pytest.mark.parametrize("service", sorted(DEPLOYED_WITH_DATABASE))
def test_migration_job_is_a_pre_install_pre_upgrade_hook(
    default_docs: list[Doc], service: str
) -> None:
    job = named(default_docs, "Job", f"{RELEASE}-{DEPLOYED_WITH_DATABASE[service]}-migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert int(annotations["helm.sh/hook-weight"]) == 0
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    container = spec["containers"][0]
    assert container["args"] == [service, "migrate"]
    assert env_of(container)[f"{env_prefix(service)}ENVIRONMENT"]["value"] == "production"


def test_migration_jobs_need_nothing_created_after_the_hook(default_docs: list[Doc]) -> None:
    """On a first install, pre-install hooks run before the release's resources exist."""
    for job in of_kind(default_docs, "Job"):
        if job["metadata"]["name"] not in MIGRATION_JOBS:
            continue
        job_weight = int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
        spec = job["spec"]["template"]["spec"]
        assert "serviceAccountName" not in spec
        container = spec["containers"][0]
        assert "envFrom" not in container
        secret_names = {
            entry["valueFrom"]["secretKeyRef"]["name"]
            for entry in container["env"]
            if "valueFrom" in entry
        }
        assert secret_names, "the migration Job must read its database credentials from a Secret"
        for name in secret_names:
            annotations = named(default_docs, "Secret", name)["metadata"]["annotations"]
            assert "pre-install" in annotations["helm.sh/hook"].split(",")
            assert "pre-upgrade" in annotations["helm.sh/hook"].split(",")
            assert int(annotations["helm.sh/hook-weight"]) < job_weight


def test_migrations_can_be_disabled(helm: str) -> None:
    docs = render(helm, "--set", "migrations.enabled=false", "--set", "kafkaTopics.enabled=false")
    assert not of_kind(docs, "Job")
    assert all("helm.sh/hook" not in (d["metadata"].get("annotations") or {}) for d in docs)


# --------------------------------------------------------------------------- secrets


def test_secret_holds_the_jwt_secret_and_database_credentials(
    configured_docs: list[Doc],
) -> None:
    data = secret_data(chart_secret(configured_docs))
    assert data.keys() == {"jwt-secret", "gateway-clients"} | {
        f"{service}-database-{field}"
        for service in DEPLOYED_WITH_DATABASE.values()
        for field in ("username", "password")
    }
    assert data["jwt-secret"] == JWT_SECRET
    assert json.loads(data["gateway-clients"]) == [GATEWAY_CLIENT]
    for service in DEPLOYED_WITH_DATABASE.values():
        assert data[f"{service}-database-username"] == "amana"
        assert data[f"{service}-database-password"] == "database-password-under-test"


def test_no_secret_value_in_configmaps_or_literal_env(configured_docs: list[Doc]) -> None:
    values = secret_values(configured_docs)
    assert JWT_SECRET in values
    sensitive = values | {"database-password-under-test", CLIENT_SECRET_HASH}
    for config_map in of_kind(configured_docs, "ConfigMap"):
        for key, value in (config_map.get("data") or {}).items():
            assert not key.endswith(("DATABASE_PASSWORD", "JWT_SECRET", "CLIENTS")), key
            assert not any(secret in value for secret in sensitive), key
    for where, _, container in containers(configured_docs):
        for entry in container.get("env") or []:
            literal = str(entry.get("value", ""))
            assert not any(secret in literal for secret in sensitive), where
            if entry["name"].endswith(("DATABASE_PASSWORD", "JWT_SECRET", "CLIENTS")):
                assert "secretKeyRef" in entry["valueFrom"], where


@pytest.mark.parametrize("release", ["configured", "production"])
def test_every_component_reads_the_one_jwt_secret(
    request: pytest.FixtureRequest, release: str
) -> None:
    docs: list[Doc] = request.getfixturevalue(f"{release}_docs")
    refs = {}
    for where, component, container in containers(docs):
        refs[where] = env_of(container)[f"{env_prefix(component)}JWT_SECRET"]["valueFrom"][
            "secretKeyRef"
        ]
        assert refs[where]["key"] == "jwt-secret", where
    assert {component for _, component, _ in containers(docs)} == {s.name for s in DEPLOYED}
    # One value. The Jobs' hook Secret is a copy of the release's: compare what they hold
    # when the chart renders them, else the references themselves.
    rendered = {
        secret["metadata"]["name"]: secret_data(secret) for secret in of_kind(docs, "Secret")
    }
    values = {
        rendered[ref["name"]][ref["key"]] if ref["name"] in rendered else ref["name"]
        for ref in refs.values()
    }
    assert len(values) == 1, refs


def test_production_with_existing_secret(production_docs: list[Doc]) -> None:
    assert not of_kind(production_docs, "Secret"), "existingSecret: the chart creates none"
    for config_map in of_kind(production_docs, "ConfigMap"):
        component = config_map["metadata"]["name"].removeprefix(f"{RELEASE}-")
        assert config_map["data"][f"{env_prefix(component)}ENVIRONMENT"] == "production"
    for where, component, container in containers(production_docs):
        for entry in container["env"]:
            if "valueFrom" in entry:
                assert entry["valueFrom"]["secretKeyRef"]["name"] == "amana-prod-secrets", where
        password = env_of(container).get(f"{env_prefix(component)}DATABASE_PASSWORD")
        if component in SERVICES_WITH_DATABASE:
            assert password is not None, where
            assert password["valueFrom"]["secretKeyRef"]["key"] == f"{component}-database-password"
    clients = env_of(container_of(production_docs, f"{RELEASE}-gateway-api"))["GATEWAY_CLIENTS"]
    assert clients["valueFrom"]["secretKeyRef"]["optional"] is True


@pytest.mark.parametrize("environment", ["production", "development", "test"])
def test_the_chart_needs_a_jwt_secret_or_a_jwks_url(helm: str, environment: str) -> None:
    password = ("--set", f"database.password={DATABASE_PASSWORD}", *SECRET_SETTINGS)
    error = refused(helm, "--set", f"global.environment={environment}", *password, given=())
    assert "secrets.jwtSecret" in error and "global.jwksUrl" in error

    with_secret = render(helm, "--set", f"global.environment={environment}", given=REQUIRED)
    with_jwks = render(
        helm,
        "--set",
        f"global.environment={environment}",
        "--set",
        f"global.jwksUrl={JWKS_URL}",
        *password,
        given=(),
    )
    assert all(
        f"{env_prefix(component)}JWT_SECRET" in env_of(container)
        for _, component, container in containers(with_secret)
    )
    assert not any(
        f"{env_prefix(component)}JWT_SECRET" in env_of(container)
        for _, component, container in containers(with_jwks)
    )


def test_the_chart_defaults_to_production(helm: str, default_docs: list[Doc]) -> None:
    assert "password" in refused(helm, "--set", f"secrets.jwtSecret={JWT_SECRET}", given=())
    for config_map in of_kind(default_docs, "ConfigMap"):
        component = config_map["metadata"]["name"].removeprefix(f"{RELEASE}-")
        assert config_map["data"][f"{env_prefix(component)}ENVIRONMENT"] == "production"


def test_a_short_jwt_secret_is_refused(helm: str) -> None:
    assert "jwtSecret" in refused(helm, "--set", "secrets.jwtSecret=too-short")


def test_production_refuses_any_cors_origin(helm: str) -> None:
    assert "corsOrigins" in refused(helm, *PRODUCTION, "--set", "gateway.corsOrigins={*}")


@pytest.mark.parametrize(
    "typo",
    [
        "components.registry.api.replica=3",
        "components.provider.routes[0].prefx=/p",
        "gateway.cors=x",
        "global.kafka.bootstrapp=x",
    ],
)
def test_values_schema_rejects_typos(helm: str, typo: str) -> None:
    assert typo.split("=")[0].rsplit(".", 1)[1] in refused(helm, "--set", typo)


# --------------------------------------------------------------------------- ingress


def test_ingress_disabled_by_default(default_docs: list[Doc]) -> None:
    assert not of_kind(default_docs, "Ingress")


def test_ingress_exposes_only_the_gateway(helm: str) -> None:
    docs = render(helm, "--set", "ingress.enabled=true", "--set", "ingress.className=nginx")
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends
    for backend in backends:
        assert backend["name"] == f"{RELEASE}-gateway-api"
        assert backend["port"]["number"] in service_ports(docs, backend["name"])


def test_ingress_refuses_a_component_without_api(helm: str) -> None:
    error = refused(helm, "--set", "ingress.enabled=true", "--set", "ingress.component=nothing")
    assert "ingress.component" in error


# --------------------------------------------------------------------------- components


def test_a_new_service_is_only_a_components_entry(helm: str, tmp_path: Path) -> None:
    docs = render_values(helm, tmp_path, {"components": {"payroll": PAYROLL}})
    assert names(docs, "Deployment") == DEPLOYMENTS | {
        f"{RELEASE}-payroll-api",
        f"{RELEASE}-payroll-worker",
    }
    assert names(docs, "Job") == MIGRATION_JOBS | {TOPICS_JOB, f"{RELEASE}-payroll-migrate"}
    config = named(docs, "ConfigMap", f"{RELEASE}-payroll")["data"]
    assert config["PAYROLL_ENVIRONMENT"] == "production"
    env = env_of(container_of(docs, f"{RELEASE}-payroll-api"))
    assert env["PAYROLL_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == (
        "payroll-database-password"
    )
    assert secret_data(chart_secret(docs))["payroll-database-password"] == DATABASE_PASSWORD
    assert config["PAYROLL_DATABASE_URL"].endswith("/amana_payroll")
    assert gateway_routes(docs)["/payroll"]["upstream"] == f"http://{RELEASE}-payroll-api:8000"


def test_every_resource_is_labelled_and_named_validly(default_docs: list[Doc]) -> None:
    for doc in default_docs:
        metadata = doc["metadata"]
        assert len(metadata["name"]) <= 63
        assert metadata["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "amana"


def test_a_disabled_component_renders_nothing(helm: str, tmp_path: Path) -> None:
    """A development aid (`development_only` in the catalog) is generated `enabled: false`."""
    sandbox = PAYROLL | {"enabled": False, "module": "psp_sandbox"}
    docs = render_values(helm, tmp_path, {"components": {"psp-sandbox": sandbox}})
    assert not [doc for doc in docs if "psp-sandbox" in doc["metadata"]["name"]]
    assert "/payroll" not in gateway_routes(docs)
    assert "psp-sandbox-database-password" not in secret_data(chart_secret(docs))
    enabled = render_values(
        helm, tmp_path, {"components": {"psp-sandbox": sandbox | {"enabled": True}}}
    )
    assert container_of(enabled, f"{RELEASE}-psp-sandbox-api")["args"] == ["psp_sandbox", "api"]
    assert gateway_routes(enabled)["/payroll"]["service"] == "psp_sandbox"


# --------------------------------------------------------------------------- kafka


def kafka_values(**kafka: Any) -> dict[str, Any]:
    return {"global": {"kafka": kafka}}


def test_kafka_defaults_to_plaintext_for_every_component(default_docs: list[Doc]) -> None:
    for where, component, container in containers(default_docs):
        p = env_prefix(component)
        environment = env_of(container)
        if where.startswith("Deployment/"):
            environment = {
                key: {"value": value}
                for key, value in named(default_docs, "ConfigMap", f"{RELEASE}-{component}")[
                    "data"
                ].items()
            } | environment
        assert environment[f"{p}KAFKA_SECURITY_PROTOCOL"]["value"] == "PLAINTEXT", where
        assert environment[f"{p}KAFKA_REPLICATION_FACTOR"]["value"] == "3", where
        assert environment[f"{p}KAFKA_MIN_INSYNC_REPLICAS"]["value"] == "2", where
        assert f"{p}KAFKA_SASL_PASSWORD" not in environment, where
        assert f"{p}KAFKA_SSL_CA_FILE" not in environment, where
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert KAFKA_TLS not in mounts, where


def test_kafka_sasl_ssl_with_mutual_tls_reaches_every_container(helm: str, tmp_path: Path) -> None:
    values = kafka_values(
        bootstrap="kafka.example:9093",
        securityProtocol="SASL_SSL",
        saslMechanism="SCRAM-SHA-256",
        existingSecret="amana-kafka-user",
        usernameKey="user",
        passwordKey="pass",
        tlsSecret="amana-kafka-tls",
        tlsCaKey="ca.crt",
        tlsCertKey="user.crt",
        tlsKeyKey="user.key",
        replicationFactor=3,
        minInsyncReplicas=2,
    )
    docs = render_values(helm, tmp_path, values)
    seen = set()
    for where, component, container in containers(docs):
        p = env_prefix(component)
        config = (
            {entry["name"]: entry.get("value") for entry in container["env"]}
            if where.startswith("Job/")
            else named(docs, "ConfigMap", f"{RELEASE}-{component}")["data"]
        )
        assert config[f"{p}KAFKA_BOOTSTRAP"] == "kafka.example:9093", where
        assert config[f"{p}KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", where
        assert config[f"{p}KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-256", where
        assert config[f"{p}KAFKA_SSL_CA_FILE"] == f"{KAFKA_TLS}/ca.crt", where
        assert config[f"{p}KAFKA_SSL_CERT_FILE"] == f"{KAFKA_TLS}/user.crt", where
        assert config[f"{p}KAFKA_SSL_KEY_FILE"] == f"{KAFKA_TLS}/user.key", where
        env = env_of(container)
        for variable, key in (("USERNAME", "user"), ("PASSWORD", "pass")):
            ref = env[f"{p}KAFKA_SASL_{variable}"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "amana-kafka-user", "key": key}, where
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == KAFKA_TLS]
        assert mount["readOnly"] is True, where
        seen.add(component)
    for where, spec in pod_specs(docs):
        (volume,) = [v for v in spec["volumes"] if v["name"] == "kafka-tls"]
        assert volume["secret"]["secretName"] == "amana-kafka-tls", where
    assert seen == {service.slug for service in DEPLOYED}


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"securityProtocol": "SASL_SSL"}, "existingSecret"),
        ({"tlsSecret": "amana-kafka-tls"}, "tlsSecret"),
        (
            {"securityProtocol": "SSL", "tlsSecret": "tls", "tlsCertKey": "user.crt"},
            "tlsKeyKey",
        ),
        ({"minInsyncReplicas": 4}, "minInsyncReplicas"),
        ({"securityProtocol": "SASL_PLAIN"}, "securityProtocol"),
        ({"saslMechanism": "PLAIN"}, "saslMechanism"),
    ],
)
def test_kafka_settings_that_cannot_work_are_refused(
    helm: str, tmp_path: Path, kafka: dict[str, Any], message: str
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(kafka_values(**kafka)))
    assert message in refused(helm, "--values", str(path))


def test_production_refuses_a_replication_factor_of_one(helm: str) -> None:
    error = refused(helm, *PRODUCTION, "--set", "global.kafka.replicationFactor=1")
    assert "replicationFactor" in error
    docs = render(helm, *PRODUCTION)
    for config_map in of_kind(docs, "ConfigMap"):
        component = config_map["metadata"]["name"].removeprefix(f"{RELEASE}-")
        assert config_map["data"][f"{env_prefix(component)}KAFKA_REPLICATION_FACTOR"] == "3"
