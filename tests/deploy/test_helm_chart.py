"""The Helm chart (deploy/helm/amana), linted and rendered by a real `helm`.

helm comes from deploy/tools/ensure-helm.sh (PATH, else .local/bin, else built with Go):
when it cannot be had, these tests fail rather than skip.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "amana"
ENSURE_HELM = REPO_ROOT / "deploy" / "tools" / "ensure-helm.sh"
RELEASE = "amana"
APP_UID = 10001

Doc = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> str:
    result = subprocess.run(
        ["bash", str(ENSURE_HELM)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"cannot obtain helm via {ENSURE_HELM}:\n{result.stderr}")
    path = result.stdout.strip()
    assert Path(path).is_file(), f"ensure-helm.sh printed {path!r}, which is not a file"
    return path


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, *args], capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT
    )


def render(helm: str, *extra: str) -> list[Doc]:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", "amana", *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def env_of(container: Doc) -> dict[str, Doc]:
    return {entry["name"]: entry for entry in container.get("env") or []}


def secret_values(docs: list[Doc]) -> set[str]:
    values: set[str] = set()
    for secret in of_kind(docs, "Secret"):
        for value in (secret.get("data") or {}).values():
            values.add(base64.b64decode(value).decode())
        values.update((secret.get("stringData") or {}).values())
    return values


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
    return render(helm, *PRODUCTION)


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_chart_lints(helm: str, strict: bool) -> None:
    args = ["lint", str(CHART)] + (["--strict"] if strict else [])
    result = run_helm(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_chart_lints_strict_in_production(helm: str) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- workloads


def test_registry_api_and_worker_deployments(default_docs: list[Doc]) -> None:
    api = named(default_docs, "Deployment", f"{RELEASE}-registry-api")
    worker = named(default_docs, "Deployment", f"{RELEASE}-registry-worker")
    assert api["spec"]["template"]["spec"]["containers"][0]["args"] == ["registry", "api"]
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["registry", "worker"]
    assert api["spec"]["replicas"] >= 1
    assert worker["spec"]["replicas"] >= 1
    # Selectors must tell api and worker pods apart, or the Service would hit the worker.
    api_selector = api["spec"]["selector"]["matchLabels"]
    worker_selector = worker["spec"]["selector"]["matchLabels"]
    assert api_selector != worker_selector
    for deployment in (api, worker):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_api_probes_use_healthz_and_readyz(default_docs: list[Doc]) -> None:
    api = named(default_docs, "Deployment", f"{RELEASE}-registry-api")
    container = api["spec"]["template"]["spec"]["containers"][0]
    port_names = {port["name"] for port in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names


def test_api_service_selects_only_api_pods(default_docs: list[Doc]) -> None:
    service = named(default_docs, "Service", f"{RELEASE}-registry-api")
    api = named(default_docs, "Deployment", f"{RELEASE}-registry-api")
    worker = named(default_docs, "Deployment", f"{RELEASE}-registry-worker")
    selector = service["spec"]["selector"].items()
    assert selector <= api["spec"]["template"]["metadata"]["labels"].items()
    assert not selector <= worker["spec"]["template"]["metadata"]["labels"].items()
    container = api["spec"]["template"]["spec"]["containers"][0]
    port_names = {port["name"] for port in container["ports"]}
    assert all(port["targetPort"] in port_names for port in service["spec"]["ports"])


def test_worker_has_no_service_and_no_port(default_docs: list[Doc]) -> None:
    worker = named(default_docs, "Deployment", f"{RELEASE}-registry-worker")
    labels = worker["spec"]["template"]["metadata"]["labels"].items()
    for service in of_kind(default_docs, "Service"):
        assert "worker" not in service["metadata"]["name"]
        assert not service["spec"]["selector"].items() <= labels
    assert "ports" not in worker["spec"]["template"]["spec"]["containers"][0]


def test_containers_run_as_non_root_with_read_only_root(default_docs: list[Doc]) -> None:
    specs = list(pod_specs(default_docs))
    assert len(specs) == 3  # api, worker, migration Job
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


def test_workloads_read_configmap_and_secret(default_docs: list[Doc]) -> None:
    config_maps = {doc["metadata"]["name"] for doc in of_kind(default_docs, "ConfigMap")}
    secrets = {doc["metadata"]["name"] for doc in of_kind(default_docs, "Secret")}
    for name in (f"{RELEASE}-registry-api", f"{RELEASE}-registry-worker"):
        container = named(default_docs, "Deployment", name)["spec"]["template"]["spec"][
            "containers"
        ][0]
        refs = {source["configMapRef"]["name"] for source in container["envFrom"]}
        assert refs <= config_maps
        database_url = env_of(container)["REGISTRY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert database_url["name"] in secrets
    config = named(default_docs, "ConfigMap", f"{RELEASE}-registry")["data"]
    assert config["REGISTRY_HOST"] == "0.0.0.0"
    assert config["REGISTRY_ENVIRONMENT"] == "development"
    assert config["REGISTRY_KAFKA_BOOTSTRAP"] == config["AMANA_KAFKA_BOOTSTRAP"]


def test_service_account_is_created_and_used(default_docs: list[Doc]) -> None:
    (account,) = of_kind(default_docs, "ServiceAccount")
    for deployment in of_kind(default_docs, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == account["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False


# --------------------------------------------------------------------------- migrations


def test_migration_job_is_a_pre_install_pre_upgrade_hook(default_docs: list[Doc]) -> None:
    job = named(default_docs, "Job", f"{RELEASE}-registry-migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert int(annotations["helm.sh/hook-weight"]) == 0
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    container = spec["containers"][0]
    assert container["args"] == ["registry", "migrate"]
    assert env_of(container)["REGISTRY_ENVIRONMENT"]["value"] == "development"


def test_migration_job_needs_nothing_created_after_the_hook(default_docs: list[Doc]) -> None:
    """On a first install, pre-install hooks run before the release's resources exist."""
    job = named(default_docs, "Job", f"{RELEASE}-registry-migrate")
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
    assert secret_names, "the migration Job must read its database URL from a Secret"
    for name in secret_names:
        secret = named(default_docs, "Secret", name)
        annotations = secret["metadata"]["annotations"]
        assert "pre-install" in annotations["helm.sh/hook"].split(",")
        assert "pre-upgrade" in annotations["helm.sh/hook"].split(",")
        assert int(annotations["helm.sh/hook-weight"]) < job_weight


def test_migrations_can_be_disabled(helm: str) -> None:
    docs = render(helm, "--set", "migrations.enabled=false")
    assert not of_kind(docs, "Job")
    assert all("helm.sh/hook" not in (d["metadata"].get("annotations") or {}) for d in docs)


# --------------------------------------------------------------------------- secrets


def test_no_secret_value_in_configmaps_or_literal_env(helm: str) -> None:
    docs = render(
        helm,
        "--set",
        "secrets.jwtSecret=jwt-secret-under-test",
        "--set",
        "secrets.database.password=database-password-under-test",
    )
    values = secret_values(docs)
    assert "jwt-secret-under-test" in values
    assert any("database-password-under-test" in value for value in values)
    sensitive = values | {"database-password-under-test"}
    for config_map in of_kind(docs, "ConfigMap"):
        for key, value in (config_map.get("data") or {}).items():
            assert not key.endswith(("DATABASE_URL", "JWT_SECRET")), key
            assert not any(secret in value for secret in sensitive), key
    for where, spec in pod_specs(docs):
        for container in spec["containers"]:
            for entry in container.get("env") or []:
                literal = str(entry.get("value", ""))
                assert not any(secret in literal for secret in sensitive), where
                if entry["name"].endswith(("DATABASE_URL", "JWT_SECRET")):
                    assert "secretKeyRef" in entry["valueFrom"], where


def test_production_with_existing_secret(production_docs: list[Doc]) -> None:
    assert not of_kind(production_docs, "Secret"), "existingSecret: the chart creates none"
    config = named(production_docs, "ConfigMap", f"{RELEASE}-registry")["data"]
    assert config["REGISTRY_ENVIRONMENT"] == "production"
    for where, spec in pod_specs(production_docs):
        env = env_of(spec["containers"][0])
        for name in ("REGISTRY_DATABASE_URL", "REGISTRY_JWT_SECRET"):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "amana-prod-secrets", where
        assert env["REGISTRY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == (
            "registry-database-url"
        )
        assert env["REGISTRY_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "jwt-secret"
    job = named(production_docs, "Job", f"{RELEASE}-registry-migrate")
    job_env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert job_env["REGISTRY_ENVIRONMENT"]["value"] == "production"


def test_production_refuses_development_secrets(helm: str) -> None:
    result = run_helm(
        helm, "template", RELEASE, str(CHART), "--set", "global.environment=production"
    )
    assert result.returncode != 0
    assert "existingSecret" in result.stderr
    weak_password = run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "global.environment=production",
        "--set",
        "secrets.jwtSecret=a-real-secret",
    )
    assert weak_password.returncode != 0
    assert "password" in weak_password.stderr


def test_values_schema_rejects_typos(helm: str) -> None:
    result = run_helm(
        helm, "template", RELEASE, str(CHART), "--set", "components.registry.api.replica=3"
    )
    assert result.returncode != 0
    assert "replica" in result.stderr


# --------------------------------------------------------------------------- ingress


def test_ingress_disabled_by_default(default_docs: list[Doc]) -> None:
    assert not of_kind(default_docs, "Ingress")


def test_ingress_exposes_the_named_component(helm: str) -> None:
    docs = render(helm, "--set", "ingress.enabled=true", "--set", "ingress.className=nginx")
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    services = {doc["metadata"]["name"]: doc for doc in of_kind(docs, "Service")}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == f"{RELEASE}-registry-api"
            ports = {p["port"] for p in services[backend["name"]]["spec"]["ports"]}
            assert backend["port"]["number"] in ports


def test_ingress_refuses_a_component_without_api(helm: str) -> None:
    result = run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "ingress.enabled=true",
        "--set",
        "ingress.component=nothing",
    )
    assert result.returncode != 0
    assert "ingress.component" in result.stderr


# --------------------------------------------------------------------------- components


def test_a_new_service_is_only_a_components_entry(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "more-components.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "components": {
                    "provider": {
                        "database": {"enabled": True},
                        "api": {"enabled": True, "replicas": 2},
                        "worker": {"enabled": True, "replicas": 1},
                    },
                    "gateway": {
                        "api": {"enabled": True, "replicas": 2},
                        "worker": {"enabled": False},
                    },
                },
                "ingress": {"enabled": True, "component": "gateway"},
            }
        )
    )
    docs = render(helm, "--values", str(values))
    deployments = {doc["metadata"]["name"] for doc in of_kind(docs, "Deployment")}
    assert deployments == {
        f"{RELEASE}-{name}" for name in ("registry-api", "registry-worker", "provider-api")
    } | {f"{RELEASE}-provider-worker", f"{RELEASE}-gateway-api"}
    jobs = {doc["metadata"]["name"] for doc in of_kind(docs, "Job")}
    assert jobs == {f"{RELEASE}-registry-migrate", f"{RELEASE}-provider-migrate"}
    provider_config = named(docs, "ConfigMap", f"{RELEASE}-provider")["data"]
    assert provider_config["PROVIDER_ENVIRONMENT"] == "development"
    provider_api = named(docs, "Deployment", f"{RELEASE}-provider-api")
    env = env_of(provider_api["spec"]["template"]["spec"]["containers"][0])
    assert env["PROVIDER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == (
        "provider-database-url"
    )
    (secret,) = [
        s
        for s in of_kind(docs, "Secret")
        if "helm.sh/hook" not in s["metadata"].get("annotations", {})
    ]
    url = base64.b64decode(secret["data"]["provider-database-url"]).decode()
    assert url.startswith("postgresql+asyncpg://")
    assert url.endswith("/amana_provider")
    gateway = named(docs, "Deployment", f"{RELEASE}-gateway-api")
    gateway_env = env_of(gateway["spec"]["template"]["spec"]["containers"][0])
    assert "GATEWAY_DATABASE_URL" not in gateway_env
    (ingress,) = of_kind(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == f"{RELEASE}-gateway-api"


def test_every_resource_is_labelled_and_named_validly(default_docs: list[Doc]) -> None:
    for doc in default_docs:
        metadata = doc["metadata"]
        assert len(metadata["name"]) <= 63
        assert metadata["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "amana"
