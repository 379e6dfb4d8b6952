"""Reference data the registry cleans against, loaded once from configuration when the app or
a command starts: a bad file stops the start with a message, not the first request."""

from __future__ import annotations

import csv
import importlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from registry.cleaning import (
    CleaningRules,
    IdentifierValidator,
    LocationHierarchy,
    parse_hierarchy,
)
from registry.settings import RegistrySettings

_STDNUM_NAME = re.compile(r"[a-z]{2,3}(\.[a-z_]+)+|[a-z_]+")
SCALAR_TYPES = frozenset({"number", "integer", "boolean", "string"})


@dataclass(frozen=True)
class RulesSource:
    """What the cleaning rules are built from: picklable, so that another process (an
    import's readers) builds the same rules."""

    phone_region: str
    locations_csv: Path
    attributes_schema: Path
    identifier_validators: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, settings: RegistrySettings) -> RulesSource:
        return cls(
            settings.default_phone_region,
            settings.locations_csv,
            settings.attributes_schema,
            tuple(sorted(settings.identifier_validators.items())),
        )

    def build(self) -> CleaningRules:
        return CleaningRules(
            phone_region=self.phone_region,
            locations=load_locations(self.locations_csv),
            attributes=load_attributes_schema(self.attributes_schema),
            identifier_validators=identifier_validators(dict(self.identifier_validators)),
        )


def cleaning_rules(settings: RegistrySettings) -> CleaningRules:
    return RulesSource.of(settings).build()


@cache
def load_locations(path: Path) -> LocationHierarchy:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames is None or not {"code", "name", "level", "parent_code"} <= set(
            reader.fieldnames
        ):
            raise ValueError(f"{path}: the header must be code,name,level,parent_code")
        return parse_hierarchy(list(reader))


@cache
def load_attributes_schema(path: Path) -> Draft202012Validator:
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    attribute_types(schema)  # refuses what the filters and events cannot carry
    return Draft202012Validator(schema)


def attribute_types(schema: Mapping[str, Any]) -> dict[str, str]:
    """Each attribute's JSON type (`pmt_score` -> `number`): the list filters cast by it."""
    types: dict[str, str] = {}
    for name, definition in (schema.get("properties") or {}).items():
        kind = definition.get("type")
        if kind is None and "enum" in definition:
            kind = "string"
        if kind not in SCALAR_TYPES:
            raise ValueError(
                f"eligibility attribute {name!r} must be of type number, integer, boolean or string"
            )
        types[name] = kind
    return types


def identifier_validators(names: Mapping[str, str]) -> dict[str, IdentifierValidator]:
    """`{"national_id": "za.idnr"}` -> the module `stdnum.za.idnr` for that scheme."""
    validators: dict[str, IdentifierValidator] = {}
    for scheme, name in names.items():
        if not _STDNUM_NAME.fullmatch(name):
            raise ValueError(f"identifier validator {name!r} is not a python-stdnum module name")
        module: Any = importlib.import_module(f"stdnum.{name}")
        if not (callable(getattr(module, "validate", None)) and callable(module.compact)):
            raise ValueError(f"stdnum.{name} has no validate() and compact()")
        validators[scheme] = module
    return validators
