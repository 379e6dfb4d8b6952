"""The service catalog: what it accepts, what it refuses, and what its command line answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from amana_common.catalog import CatalogError, catalog_path, load_catalog, main
from amana_common.catalog_files import replace_block
from amana_common.scaffold import create_service

VALID = """
[services.registry]
port = 8101
database = true
worker = true
publishes = ["registry.events"]
routes = [{ prefix = "/registry" }]

[services.psp_sandbox]
port = 8190
database = true
worker = true
consumes = ["registry.events"]
development_only = true

[[services.psp_sandbox.routes]]
prefix = "/webhooks"
upstream_prefix = "/hooks"
timeout_s = 5
max_body_bytes = 1024
public_paths = ["^/providers/[^/]+$"]

[services.gateway]
port = 8000
gateway = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "services" / "catalog.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_valid_catalog_and_what_it_derives(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, VALID))

    assert catalog.names() == ["registry", "psp_sandbox", "gateway"]
    sandbox = catalog.service("psp_sandbox")
    assert (sandbox.slug, sandbox.prefix, sandbox.database_name) == (
        "psp-sandbox",
        "PSP_SANDBOX_",
        "amana_psp_sandbox",
    )
    assert catalog.databases() == ["amana_registry", "amana_psp_sandbox"]
    assert catalog.published_topics() == ["registry.events"]
    assert catalog.gateway.name == "gateway"
    assert catalog.gateway_routes(lambda s: f"http://{s.slug}:1") == [
        {
            "prefix": "/registry",
            "service": "registry",
            "upstream": "http://registry:1",
            "upstream_prefix": "",
        },
        {
            "prefix": "/webhooks",
            "service": "psp_sandbox",
            "upstream": "http://psp-sandbox:1",
            "upstream_prefix": "/hooks",
            "timeout_s": 5,
            "max_body_bytes": 1024,
            "public_paths": ["^/providers/[^/]+$"],
        },
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("port = 8190", "port = 8101"), "port 8101"),
        (('prefix = "/webhooks"', 'prefix = "/registry"'), "route prefix '/registry'"),
        (('consumes = ["registry.events"]', 'consumes = ["payroll.events"]'), "no one publishes"),
        (
            ('publishes = ["registry.events"]', 'publishes = ["provider.events"]'),
            "registry.events only",
        ),
        (
            (
                "[services.psp_sandbox]\nport = 8190\ndatabase = true",
                "[services.psp_sandbox]\nport = 8190",
            ),
            "needs database",
        ),
        (("gateway = true", "gateway = false"), "exactly one service"),
        (("development_only = true", "development_onli = true"), "development_onli"),
        (("[services.registry]", "[services.Registry]"), "name"),
        (("timeout_s = 5", "timeout_s = 0"), "timeout_s"),
        (('"^/providers/[^/]+$"', '"^/providers/[$"'), "public path"),
        (
            (
                "[services.gateway]\nport = 8000\ngateway = true",
                '[services.gateway]\nport = 8000\ngateway = true\nroutes = [{ prefix = "/g" }]',
            ),
            "no routes",
        ),
    ],
)
def test_an_inconsistent_catalog_is_refused(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in VALID
    with pytest.raises(CatalogError, match=message.replace("[", r"\[")):
        load_catalog(write(tmp_path, VALID.replace(old, new)))


def test_the_gateway_starts_last(tmp_path: Path) -> None:
    gateway = "[services.gateway]\nport = 8000\ngateway = true\n"
    reordered = gateway + VALID.replace(gateway, "")
    with pytest.raises(CatalogError, match="starts last"):
        load_catalog(write(tmp_path, reordered))


def test_a_catalog_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"catalog\.toml"):
        load_catalog(write(tmp_path, "[services.registry\n"))
    with pytest.raises(CatalogError, match="nothing else"):
        load_catalog(write(tmp_path, VALID + "\n[other]\nx = 1\n"))


def test_an_edited_catalog_is_read_again(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    assert "psp_sandbox" in load_catalog(path).names()
    path.write_text(VALID.replace("development_only = true", "development_only = false\n"))
    assert load_catalog(path).service("psp_sandbox").development_only is False


def test_amana_catalog_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, VALID)
    monkeypatch.setenv("AMANA_CATALOG", str(path))
    assert catalog_path() == path
    assert load_catalog().names() == ["registry", "psp_sandbox", "gateway"]


@pytest.mark.parametrize(
    ("command", "output"),
    [
        ("start-order", "registry:8101\npsp_sandbox:8190\ngateway:8000\n"),
        ("databases", "amana_registry\namana_psp_sandbox\n"),
        ("topics", "registry.events\n"),
        (
            "mypy-packages",
            "-p amana_common -p amana_contracts -p registry -p psp_sandbox -p gateway\n",
        ),
        ("summary", "registry :8101, psp_sandbox :8190, gateway :8000\n"),
    ],
)
def test_command_line_answers_for_bash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, output: str
) -> None:
    assert main(["--catalog", str(write(tmp_path, VALID)), command]) == 0
    assert capsys.readouterr().out == output


def test_command_line_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID.replace("port = 8190", "port = 8101"))
    assert main(["--catalog", str(path), "databases"]) == 2
    assert "port 8101" in capsys.readouterr().err


def test_a_generated_block_needs_its_markers() -> None:
    with pytest.raises(CatalogError, match="one block between"):
        replace_block("services:\n  postgres: {}\n", ["  x: 1"], Path("docker-compose.yml"))


@pytest.mark.parametrize(
    ("name", "description", "message"),
    [
        ("registry", "households", "exists already"),
        ("Payroll", "programmes", "lower case"),
        ("payroll", 'say "hi"', "description"),
    ],
)
def test_a_new_service_the_catalog_would_refuse_writes_nothing(
    tmp_path: Path, name: str, description: str, message: str
) -> None:
    path = write(tmp_path, VALID)
    with pytest.raises(CatalogError, match=message):
        create_service(path, name, 8103, description)
    assert path.read_text() == VALID
    assert sorted(p.name for p in path.parent.iterdir()) == ["catalog.toml"]


def test_a_new_service_on_a_taken_port_writes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    with pytest.raises(CatalogError, match="port 8101"):
        create_service(path, "payroll", 8101, "programmes")
    assert path.read_text() == VALID
    assert not (path.parent / "payroll").exists()


def test_a_new_service_comes_before_the_gateway(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    written = create_service(path, "payroll", 8103, "programmes, payrolls and cycles")
    catalog = load_catalog(path)
    assert catalog.names() == ["registry", "psp_sandbox", "payroll", "gateway"]
    payroll = catalog.service("payroll")
    assert (payroll.port, payroll.database, payroll.worker) == (8103, True, True)
    assert [route.prefix for route in payroll.routes] == ["/payroll"]
    service_dir = path.parent / "payroll"
    assert service_dir / "src" / "payroll" / "main.py" in written
    settings = (service_dir / "src" / "payroll" / "settings.py").read_text()
    assert 'service_config("PAYROLL_")' in settings
    assert "port: int = 8103" in settings
    assert not list(service_dir.rglob("*.tmpl"))
    assert "{{" not in "".join(p.read_text() for p in service_dir.rglob("*") if p.is_file())
