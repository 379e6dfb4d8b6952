"""The Helm chart as production runs it: schema-valid manifests, probes, resources and pod
security on every workload, autoscaling and disruption budgets, NetworkPolicies that allow
exactly what each pod needs, database and Kafka from existing clusters, secrets from existing
Secrets, the catalog's secret settings and outbound ports, and the compose file's components.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from amana_common.catalog import CatalogService
from amana_common.catalog_files import helm_component

from .conftest import CATALOG, LoadSettings, env_prefix
from .kube_schemas import KUBERNETES_VERSIONS, schema_errors
from .test_helm_chart import (
    CHART,
    DEPLOYED,
    DEPLOYMENTS,
    JWKS_URL,
    JWT_SECRET,
    MIGRATION_JOBS,
    RELEASE,
    REPO_ROOT,
    SECRET_SETTINGS,
    SERVICE_LABEL,
    TOPICS_JOB,
    Doc,
    container_of,
    env_of,
    environment_of,
    named,
    names,
    of_kind,
    refused,
    render,
    render_values,
)
from .test_helm_chart import (
    DATABASE_PASSWORD as PASSWORD,
)

PRODUCTION_VALUES = CHART / "values-production.yaml"
ROLE_LABEL = "app.kubernetes.io/component"
# Services that arrive later, as their catalog entries will say (the chart must take them as
# they come): a worker calling providers' APIs with a required encryption key, and one pushing
# to DHIS2 with optional credentials.
FUTURE = (
    CatalogService(
        name="disbursement",
        port=8104,
        database=True,
        worker=True,
        publishes=("disbursement.events",),
        routes=({"prefix": "/payments"},),
        secret_env={"SECRETS_KEY": "required"},
        outbound={"worker": (443,)},
    ),
    CatalogService(
        name="analytics",
        port=8105,
        database=True,
        worker=True,
        routes=({"prefix": "/reports"},),
        secret_env={"PSEUDONYM_KEY": "required", "DHIS2_TOKEN": "optional"},
        outbound={"worker": (443,)},
    ),
)
FUTURE_COMPONENTS = {service.slug: helm_component(service) for service in FUTURE}
SECRETS_KEY = "c2VjcmV0cy1rZXktb2YtMzItYnl0ZXMtZm9yLXRlc3Q="
PSEUDONYM_KEY = "pseudonym-key-of-at-least-32-bytes-for-tests"


@pytest.fixture(scope="module")
def default_docs(helm: str) -> list[Doc]:
    """The chart's defaults with only what it requires."""
    return render(helm)


@pytest.fixture(scope="module")
def production_docs(helm: str) -> list[Doc]:
    return render(helm, "--values", str(PRODUCTION_VALUES), given=())


@pytest.fixture(scope="module")
def future_docs(helm: str, tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    """values-production.yaml with the services to come, their secrets in amana-secrets."""
    path = tmp_path_factory.mktemp("future") / "values.yaml"
    path.write_text(yaml.safe_dump({"components": FUTURE_COMPONENTS}))
    return render(helm, "--values", str(PRODUCTION_VALUES), "--values", str(path), given=())


def workloads(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc


def pod_labels(doc: Doc) -> dict[str, str]:
    labels: dict[str, str] = doc["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector
    return bool(selector["matchLabels"].items() <= labels.items())


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("release", ["default", "production", "future"])
def test_manifests_validate_against_the_kubernetes_schemas(
    request: pytest.FixtureRequest, release: str, version: str
) -> None:
    docs: list[Doc] = request.getfixturevalue(f"{release}_docs")
    assert docs
    errors = [error for doc in docs for error in schema_errors(doc, version)]
    assert errors == []


def test_the_validator_sees_a_broken_manifest(default_docs: list[Doc]) -> None:
    """Strict schemas: a misspelt field and a wrong type are errors, an unknown kind too."""
    deployment = named(default_docs, "Deployment", f"{RELEASE}-registry-api")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    broken["spec"]["revisionHistoryLimit"] = "five"
    errors = schema_errors(broken, KUBERNETES_VERSIONS[-1])
    assert any("httpGett" in error for error in errors), errors
    assert any("revisionHistoryLimit" in error for error in errors), errors
    unknown = {"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "no schema" in schema_errors(unknown, KUBERNETES_VERSIONS[-1])[0]


# --------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("release", ["default", "production", "future"])
def test_every_deployment_has_probes_resources_and_pod_security(
    request: pytest.FixtureRequest, release: str
) -> None:
    docs: list[Doc] = request.getfixturevalue(f"{release}_docs")
    for where, workload in workloads(docs):
        spec = workload["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False, where
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/tmp"] in tmp
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), where
            assert "memory" in resources["limits"], where
            if workload["kind"] != "Deployment":
                continue
            ports = {port["name"]: port["containerPort"] for port in container["ports"]}
            for probe, path in (
                ("startupProbe", "/healthz"),
                ("livenessProbe", "/healthz"),
                ("readinessProbe", "/readyz"),
            ):
                assert container[probe]["httpGet"]["path"] == path, where
                assert container[probe]["httpGet"]["port"] in ports, where


@pytest.mark.parametrize("release", ["default", "production", "future"])
def test_every_api_autoscales_and_every_deployment_has_a_disruption_budget(
    request: pytest.FixtureRequest, release: str
) -> None:
    docs: list[Doc] = request.getfixturevalue(f"{release}_docs")
    deployments = of_kind(docs, "Deployment")
    apis = {d["metadata"]["name"] for d in deployments if pod_labels(d)[ROLE_LABEL] == "api"}
    autoscalers = of_kind(docs, "HorizontalPodAutoscaler")
    assert {hpa["spec"]["scaleTargetRef"]["name"] for hpa in autoscalers} == apis
    for hpa in autoscalers:
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert "replicas" not in named(docs, "Deployment", hpa["metadata"]["name"])["spec"]
    budgets = of_kind(docs, "PodDisruptionBudget")
    assert len(budgets) == len(deployments)
    for deployment in deployments:
        (budget,) = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(deployment))]
        assert budget["spec"]["maxUnavailable"] == 1
        # A budget selecting other pods too would count them as available.
        for other in of_kind(docs, "Deployment"):
            if other is not deployment:
                assert not selects(budget["spec"]["selector"], pod_labels(other))


def test_autoscaling_and_budgets_can_be_turned_off_per_component(helm: str, tmp_path: Path) -> None:
    values = {
        "components": {
            "registry": {
                "api": {"replicas": 3, "autoscaling": {"enabled": False}},
                "worker": {"podDisruptionBudget": {"enabled": False}},
            },
            "provider": {"api": {"autoscaling": {"minReplicas": 3, "maxReplicas": 9}}},
        }
    }
    docs = render_values(helm, tmp_path, values)
    assert named(docs, "Deployment", f"{RELEASE}-registry-api")["spec"]["replicas"] == 3
    assert f"{RELEASE}-registry-api" not in names(docs, "HorizontalPodAutoscaler")
    assert f"{RELEASE}-registry-worker" not in names(docs, "PodDisruptionBudget")
    provider = named(docs, "HorizontalPodAutoscaler", f"{RELEASE}-provider-api")["spec"]
    assert (provider["minReplicas"], provider["maxReplicas"]) == (3, 9)


def test_migration_jobs_are_bounded_hooks_with_their_components_image_and_secrets(
    future_docs: list[Doc],
) -> None:
    jobs = {job["metadata"]["name"]: job for job in of_kind(future_docs, "Job")}
    assert jobs.keys() == MIGRATION_JOBS | {
        f"{RELEASE}-{slug}-migrate" for slug in FUTURE_COMPONENTS
    }
    for name, job in jobs.items():
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        assert job["spec"]["backoffLimit"] == 1
        assert job["spec"]["activeDeadlineSeconds"] == 900
        component = name.removeprefix(f"{RELEASE}-").removesuffix("-migrate")
        (migrate,) = job["spec"]["template"]["spec"]["containers"]
        api = container_of(future_docs, f"{RELEASE}-{component}-api")
        assert migrate["image"] == api["image"]
        assert migrate["args"] == [component.replace("-", "_"), "migrate"]
        secret_env = {e["name"]: e["valueFrom"] for e in api["env"] if "valueFrom" in e}
        assert {e["name"]: e["valueFrom"] for e in migrate["env"] if "valueFrom" in e} == (
            secret_env
        )
        assert {m["mountPath"] for m in migrate["volumeMounts"]} == {
            m["mountPath"] for m in api["volumeMounts"]
        }


# --------------------------------------------------------------------------- compose


def test_the_chart_runs_the_components_compose_runs(default_docs: list[Doc]) -> None:
    """compose's containers, but its infrastructure (PostgreSQL, Kafka) and the development
    aids, are the chart's Deployments and Jobs, by component and role."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    infrastructure = {"postgres", "kafka"}
    development_only = {s.slug for s in CATALOG.services if s.development_only}
    expected = {
        name
        for name in compose
        if name not in infrastructure and name.rsplit("-", 1)[0] not in development_only
    }
    rendered = {
        doc["metadata"]["name"].removeprefix(f"{RELEASE}-")
        for doc in default_docs
        if doc["kind"] in ("Deployment", "Job")
    }
    assert rendered == expected
    assert len(rendered) == len(DEPLOYMENTS) + len(MIGRATION_JOBS) + 1


def test_the_topic_creator_reaches_the_configured_kafka(production_docs: list[Doc]) -> None:
    """values-production.yaml leaves the topics to Strimzi; enabled, it uses the same client
    settings and credentials as the services."""
    assert TOPICS_JOB not in names(production_docs, "Job")


def test_the_topic_creator_uses_the_services_kafka_settings(helm: str) -> None:
    docs = render(helm, "--values", str(PRODUCTION_VALUES), "--set", "kafkaTopics.enabled=true")
    (container,) = named(docs, "Job", TOPICS_JOB)["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == [
        "amana_common.topics",
        "--bootstrap",
        "amana-kafka-bootstrap.kafka.svc:9093",
    ]
    env = env_of(container)
    assert env["AMANA_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["AMANA_KAFKA_SSL_CA_FILE"]["value"] == "/etc/amana/kafka-tls/ca.crt"
    assert env["AMANA_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "amana-kafka-user",
        "key": "password",
    }
    assert env["AMANA_KAFKA_REPLICATION_FACTOR"]["value"] == "3"


# --------------------------------------------------------------------------- network policies


class Policies:
    """What the rendered NetworkPolicies allow a pod, by its labels."""

    def __init__(self, docs: list[Doc]) -> None:
        self.policies = of_kind(docs, "NetworkPolicy")

    def of(self, labels: dict[str, str]) -> Doc:
        matching = [p for p in self.policies if selects(p["spec"]["podSelector"], labels)]
        assert len(matching) == 1, f"{labels}: {[p['metadata']['name'] for p in matching]}"
        spec: Doc = matching[0]["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        return spec

    def ingress(self, labels: dict[str, str]) -> list[Doc]:
        rules: list[Doc] = self.of(labels)["ingress"]
        return rules

    def egress(self, labels: dict[str, str]) -> list[Doc]:
        rules: list[Doc] = self.of(labels)["egress"]
        return rules


def rule(to: list[Doc] | None, *ports: tuple[int | str, str]) -> Doc:
    result: Doc = {"ports": [{"port": port, "protocol": protocol} for port, protocol in ports]}
    if to:
        result = {"to": to} | result
    return result


def values_of(docs_values: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(docs_values.read_text())
    return values


PRODUCTION = values_of(PRODUCTION_VALUES)
NP = PRODUCTION["networkPolicy"]
DNS = rule(
    [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    (53, "UDP"),
    (53, "TCP"),
)
DATABASE = rule(NP["database"]["to"], (5432, "TCP"))
KAFKA = rule(NP["kafka"]["to"], (9093, "TCP"))
IDENTITY_PROVIDER = rule(NP["identityProvider"]["to"], (443, "TCP"))
EXTERNAL_HTTPS = rule(NP["external"]["to"], (443, "TCP"))
GATEWAY_PODS = {
    "podSelector": {
        "matchLabels": {
            "app.kubernetes.io/name": "amana",
            "app.kubernetes.io/instance": RELEASE,
            SERVICE_LABEL: "gateway",
            ROLE_LABEL: "api",
        }
    }
}
HTTP = [{"port": "http", "protocol": "TCP"}]


def test_every_pod_of_the_release_has_exactly_one_policy(future_docs: list[Doc]) -> None:
    policies = Policies(future_docs)
    for _, workload in workloads(future_docs):
        policies.of(pod_labels(workload))
    assert len(policies.policies) == len(list(workloads(future_docs)))


def test_only_the_ingress_controller_reaches_the_gateway_and_only_the_gateway_the_apis(
    future_docs: list[Doc],
) -> None:
    policies = Policies(future_docs)
    scrapers = {"from": NP["metrics"]["from"], "ports": HTTP}
    for where, workload in workloads(future_docs):
        labels = pod_labels(workload)
        ingress = policies.ingress(labels)
        if labels[ROLE_LABEL] == "api" and labels[SERVICE_LABEL] == "gateway":
            assert ingress == [{"from": NP["ingressController"]["from"], "ports": HTTP}, scrapers]
        elif labels[ROLE_LABEL] == "api":
            assert ingress == [{"from": [GATEWAY_PODS], "ports": HTTP}, scrapers], where
        elif labels[ROLE_LABEL] == "worker":
            assert ingress == [scrapers], where
        else:
            assert ingress == [], where


def test_each_pod_reaches_only_dns_its_database_kafka_and_what_it_calls(
    future_docs: list[Doc],
) -> None:
    policies = Policies(future_docs)
    outbound = {(service.slug, role) for service in FUTURE for role in service.outbound}
    for where, workload in workloads(future_docs):
        labels = pod_labels(workload)
        component, role = labels[SERVICE_LABEL], labels[ROLE_LABEL]
        egress = policies.egress(labels)
        if role in ("migration",):
            assert egress == [DNS, DATABASE], where
            continue
        if component == "gateway":
            apis = {
                "matchLabels": {
                    "app.kubernetes.io/name": "amana",
                    "app.kubernetes.io/instance": RELEASE,
                    ROLE_LABEL: "api",
                }
            }
            expected = [DNS, rule([{"podSelector": apis}], (8000, "TCP")), IDENTITY_PROVIDER]
        else:
            expected = [DNS, DATABASE, KAFKA, IDENTITY_PROVIDER]
        if (component, role) in outbound:
            expected.append(EXTERNAL_HTTPS)
        assert egress == expected, where


def test_defaults_deny_what_is_not_configured(default_docs: list[Doc]) -> None:
    """Without values: no scraper, no identity provider, no outbound; the database and Kafka
    on their ports (any address until networkPolicy.database/kafka narrow them)."""
    policies = Policies(default_docs)
    outbound: dict[tuple[str, str], tuple[int, ...]] = {
        (s.slug, role): ports for s in CATALOG.services for role, ports in s.outbound.items()
    }
    for where, workload in workloads(default_docs):
        labels = pod_labels(workload)
        egress = policies.egress(labels)
        ports = {(p["port"], p["protocol"]) for r in egress for p in r["ports"]}
        ports -= {
            (port, "TCP") for port in outbound.get((labels[SERVICE_LABEL], labels[ROLE_LABEL]), ())
        }
        if labels[SERVICE_LABEL] == "kafka-topics":
            assert ports == {(53, "UDP"), (53, "TCP"), (9092, "TCP"), (9093, "TCP")}, where
        elif labels[ROLE_LABEL] == "migration":
            assert ports == {(53, "UDP"), (53, "TCP"), (5432, "TCP")}, where
        elif labels[SERVICE_LABEL] == "gateway":
            assert ports == {(53, "UDP"), (53, "TCP"), (8000, "TCP")}, where
        else:
            assert ports == {
                (53, "UDP"),
                (53, "TCP"),
                (5432, "TCP"),
                (9092, "TCP"),
                (9093, "TCP"),
            }, where
        if labels[ROLE_LABEL] != "api":
            assert policies.ingress(labels) == [], where


def test_egress_of_ones_own_per_component_and_the_otel_collector(helm: str, tmp_path: Path) -> None:
    dhis2 = {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}], "ports": [{"port": 443}]}
    values = {
        "global": {"otel": {"endpoint": "http://otel-collector.observability:4317"}},
        "components": {"registry": {"worker": {"egress": [dhis2]}}},
    }
    docs = render_values(helm, tmp_path, values)
    policies = Policies(docs)
    worker = pod_labels(named(docs, "Deployment", f"{RELEASE}-registry-worker"))
    api = pod_labels(named(docs, "Deployment", f"{RELEASE}-registry-api"))
    otel = rule(None, (4317, "TCP"), (4318, "TCP"))
    assert policies.egress(worker)[-2:] == [otel, dhis2]
    assert dhis2 not in policies.egress(api)
    assert otel in policies.egress(api)
    config = named(docs, "ConfigMap", f"{RELEASE}-registry")["data"]
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert config["OTEL_SERVICE_NAME"] == "amana-registry"
    without = named(render(helm), "ConfigMap", f"{RELEASE}-registry")["data"]
    assert not any(key.startswith("OTEL_") for key in without)


# --------------------------------------------------------------------------- database


def test_existing_postgresql_per_component(
    production_docs: list[Doc], load_settings: LoadSettings
) -> None:
    """CloudNativePG: one Cluster per component, credentials from its <cluster>-app Secret,
    verify-full against the CA, and the service reads the URL with those credentials."""
    deployed = [s.name for s in CATALOG.with_database() if not s.development_only]
    for service in deployed:
        deployment = named(production_docs, "Deployment", f"{RELEASE}-{service}-api")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        config = named(production_docs, "ConfigMap", f"{RELEASE}-{service}")["data"]
        p = env_prefix(service)
        assert config[f"{p}DATABASE_URL"] == (
            f"postgresql+asyncpg://amana-{service}-rw:5432/amana_{service}"
        )
        assert config["PGSSLMODE"] == "verify-full"
        assert config["PGSSLROOTCERT"] == "/etc/amana/postgres-ca/ca.crt"
        env = env_of(container)
        for variable, key in (("USER", "username"), ("PASSWORD", "password")):
            ref = env[f"{p}DATABASE_{variable}"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": f"amana-{service}-app", "key": key}
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["postgres-ca"]["secret"]["secretName"] == "amana-postgres-ca"
        environment = dict(config)
        environment[f"{p}DATABASE_USER"] = "app"
        environment[f"{p}DATABASE_PASSWORD"] = "s3cr:t/@#"
        environment[f"{p}KAFKA_SASL_USERNAME"] = "amana"
        environment[f"{p}KAFKA_SASL_PASSWORD"] = "kafka-password"
        for setting in CATALOG.service(service).secret_env:
            environment[f"{p}{setting}"] = SECRETS_KEY
        url = make_url(load_settings(service, environment).database_url)
        assert (url.username, url.password, url.host) == ("app", "s3cr:t/@#", f"amana-{service}-rw")


def test_a_components_database_settings_override_the_servers(helm: str, tmp_path: Path) -> None:
    values = {
        "database": {"existingSecret": "pg-app", "host": "pg.internal"},
        "components": {
            "registry": {"database": {"host": "registry-db", "port": 6432, "passwordKey": "pw"}}
        },
    }
    given = ("--set", f"global.jwksUrl={JWKS_URL}", *SECRET_SETTINGS)
    docs = render_values(helm, tmp_path, values, given=given)
    registry = named(docs, "ConfigMap", f"{RELEASE}-registry")["data"]
    provider = named(docs, "ConfigMap", f"{RELEASE}-provider")["data"]
    assert (
        registry["REGISTRY_DATABASE_URL"] == "postgresql+asyncpg://registry-db:6432/amana_registry"
    )
    assert (
        provider["PROVIDER_DATABASE_URL"] == "postgresql+asyncpg://pg.internal:5432/amana_provider"
    )
    env = env_of(container_of(docs, f"{RELEASE}-registry-worker"))
    assert env["REGISTRY_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "pg-app",
        "key": "pw",
    }
    for secret in of_kind(docs, "Secret"):
        assert not any("database" in key for key in secret["data"]), "credentials are pg-app's"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("database.sslmode=verify-full", "caSecret"),
        ("database.sslmode=sometimes", "sslmode"),
        ("database.password=amana", "database.existingSecret"),
    ],
)
def test_database_settings_that_cannot_work_are_refused(
    helm: str, setting: str, message: str
) -> None:
    given = ("--set", f"global.jwksUrl={JWKS_URL}")
    assert message in refused(helm, "--set", setting, given=given)


# --------------------------------------------------------------------------- catalog secrets


def test_the_catalogs_secret_settings_come_from_the_existing_secret(
    future_docs: list[Doc],
) -> None:
    for service in FUTURE:
        for where in ("api", "worker", "migrate"):
            kind = "Job" if where == "migrate" else "Deployment"
            workload = named(future_docs, kind, f"{RELEASE}-{service.slug}-{where}")
            env = env_of(workload["spec"]["template"]["spec"]["containers"][0])
            for setting, need in service.secret_env.items():
                ref = env[f"{service.prefix}{setting}"]["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "amana-secrets"
                assert ref["key"] == service.secret_key(setting)
                assert ref.get("optional", False) is (need == "optional")


def test_production_refuses_a_required_secret_setting_it_cannot_give(
    helm: str, tmp_path: Path, load_settings: LoadSettings
) -> None:
    values = {"components": FUTURE_COMPONENTS}
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    # Without the catalog's own secret settings: those services are in the catalog now.
    base = ("--set", f"secrets.jwtSecret={JWT_SECRET}", "--set", f"database.password={PASSWORD}")
    error = refused(helm, "--values", str(path), given=base)
    assert "disbursement-secrets-key" in error or "analytics-pseudonym-key" in error

    given = {"disbursement-secrets-key": SECRETS_KEY, "analytics-pseudonym-key": PSEUDONYM_KEY}
    docs = render_values(helm, tmp_path, values | {"secrets": {"values": given}}, given=base)
    for service in FUTURE:
        container = container_of(docs, f"{RELEASE}-{service.slug}-worker")
        environment = environment_of(docs, container)
        assert environment[f"{service.prefix}{next(iter(service.secret_env))}"] in given.values()
        assert f"{service.prefix}DHIS2_TOKEN" not in environment


def test_only_the_outbound_role_may_leave_the_cluster(future_docs: list[Doc]) -> None:
    for service in FUTURE:
        api = named(future_docs, "NetworkPolicy", f"{RELEASE}-{service.slug}-api")
        worker = named(future_docs, "NetworkPolicy", f"{RELEASE}-{service.slug}-worker")
        assert EXTERNAL_HTTPS in worker["spec"]["egress"]
        assert EXTERNAL_HTTPS not in api["spec"]["egress"]


def test_development_only_services_are_not_deployed(helm: str, tmp_path: Path) -> None:
    sandbox = CatalogService(
        name="psp_sandbox", port=8190, database=True, worker=True, development_only=True
    )
    docs = render_values(helm, tmp_path, {"components": {"psp-sandbox": helm_component(sandbox)}})
    assert not [doc for doc in docs if "psp-sandbox" in doc["metadata"]["name"]]
    assert {d["metadata"]["name"] for d in of_kind(docs, "Deployment")} == DEPLOYMENTS
    assert {s.slug for s in DEPLOYED} == {
        pod_labels(d)[SERVICE_LABEL] for d in of_kind(docs, "Deployment")
    }
