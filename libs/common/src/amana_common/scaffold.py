"""A new service's skeleton and its catalog entry:
`python -m amana_common.catalog new <name> --port <port>` (`make service NAME=... PORT=...`).

The skeleton is the wiring every service has (settings, app, entry point, migrations with the
infrastructure tables, test fixtures) and the empty files of the layout every service shares;
its own tests check that it answers /healthz and that its migrations match its models.
"""

from __future__ import annotations

import re
from pathlib import Path

from amana_common.catalog import CatalogError, load_catalog

TEMPLATE = Path(__file__).with_name("service_template")
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def skeleton(name: str, port: int, description: str) -> dict[str, str]:
    """The files of services/<name>/, by path below it: service_template/, its `NAME` folder
    renamed and its {{placeholders}} filled."""
    values = {
        "name": name,
        "slug": name.replace("_", "-"),
        "Camel": "".join(part.capitalize() for part in name.split("_")),
        "PREFIX": f"{name.upper()}_",
        "port": str(port),
        "title": name.replace("_", " "),
        "description": description,
        "Description": description[:1].upper() + description[1:],
    }
    files = {}
    for template in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = template.relative_to(TEMPLATE).as_posix().removesuffix(".tmpl")
        text = template.read_text(encoding="utf-8")
        files[relative.replace("NAME", name)] = PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
    return files


def catalog_entry(name: str, port: int, description: str) -> str:
    slug = name.replace("_", "-")
    return f"""[services.{name}]
description = "{description}"
port = {port}
database = true
worker = true
# publishes = ["{name}.events"] once contracts/ defines its events
publishes = []
consumes = []
routes = [{{ prefix = "/{slug}" }}]

"""


def create_service(catalog_file: Path, name: str, port: int, description: str) -> list[Path]:
    """Writes services/<name>/ and the service's table in the catalog, before the gateway's;
    answers the files written. Nothing is written when the catalog would not accept it."""
    catalog = load_catalog(catalog_file)
    if not re.fullmatch(r"[a-z][a-z0-9_]*[a-z0-9]", name):
        raise CatalogError(f"{name!r}: a service name is a Python package name in lower case")
    if not re.fullmatch(r"[A-Za-z0-9 ,;:()/'-]+", description):
        raise CatalogError("the description is one line of letters, digits and punctuation")
    service_dir = catalog_file.parent / name
    if name in catalog.names() or service_dir.exists():
        raise CatalogError(f"{name} exists already")
    text = catalog_file.read_text(encoding="utf-8")
    gateway_table = f"[services.{catalog.gateway.name}]"
    if text.count(gateway_table) != 1:
        raise CatalogError(f"{catalog_file}: cannot find {gateway_table}")
    new_text = text.replace(gateway_table, catalog_entry(name, port, description) + gateway_table)
    checked = catalog_file.with_name(f".{catalog_file.name}.new")
    checked.write_text(new_text, encoding="utf-8")
    try:
        load_catalog(checked)
    finally:
        checked.unlink()
    written = []
    for relative, content in skeleton(name, port, description).items():
        path = service_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    catalog_file.write_text(new_text, encoding="utf-8")
    return [catalog_file, *written]
