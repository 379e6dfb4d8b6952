"""Kubernetes' own JSON schemas, as the PyPI package kubernetes-validate ships them (pinned in
pyproject.toml and uv.lock), compiled once per kind and version.

Strict: an unknown field anywhere is an error, as `kubectl apply --validate=strict` would say.
A kind without a schema is an error too, unless it is one of CUSTOM_RESOURCE_KINDS (the
chart's CRD-based resources, skipped explicitly; none today).
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

CUSTOM_RESOURCE_KINDS: frozenset[str] = frozenset()
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the one helm renders for.
KUBERNETES_VERSIONS = ("1.29", "1.34")


def _schema_dir(version: str) -> Any:
    return resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{version}.0-local-strict"
    )


@functools.cache
def _registry(version: str) -> Registry[Any]:
    definitions = json.loads(_schema_dir(version).joinpath("_definitions.json").read_text())
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    return registry


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir(version).joinpath(f"{kind.lower()}-{group_version}.json")
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    registry = Resource.from_contents(schema) @ _registry(version)
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(
        schema, registry=registry
    )
    return validator


def schema_errors(doc: dict[str, Any], version: str) -> list[str]:
    """What is wrong with one manifest for that Kubernetes version (nothing: [])."""
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    if doc["kind"] in CUSTOM_RESOURCE_KINDS:
        return []
    validator = _validator(version, doc["kind"], doc["apiVersion"])
    if validator is None:
        return [f"{where}: no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {version}"]
    return [
        f"{where}: {'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(doc)
    ]
