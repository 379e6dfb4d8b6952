"""The contract test's own machinery: a service's additions, and which refusals of schema-valid
requests it excuses (only 422s naming fields whose rules the schema cannot state)."""

from types import SimpleNamespace
from typing import Any

import pytest
from schemathesis.openapi.checks import RejectedPositiveData

from amana_common.catalog import load_catalog
from amana_common.testing.contract import (
    Contract,
    Served,
    beyond_schema_of,
    contract_of,
    refusals_beyond_the_schema,
    schemathesis_config,
)


def test_a_service_without_contract_py_gets_the_defaults() -> None:
    assert contract_of("no_such_service") == Contract()


def test_a_services_additions_come_from_its_tests_contract_py() -> None:
    assert "GET /households/search" in contract_of("registry").beyond_schema


def test_the_gateway_excuses_its_upstreams_fields_at_its_own_paths() -> None:
    beyond = beyond_schema_of(load_catalog().gateway)

    assert "query" in beyond["GET /registry/households/search"]
    assert "delivery.base_url" in beyond["POST /providers"]


def _refusal(status: int, body: dict[str, Any]) -> tuple[Any, Any, Any]:
    failure = RejectedPositiveData(
        operation="POST /things", message="", status_code=status, allowed_statuses=["2xx"]
    )
    case = SimpleNamespace(method="post", operation=SimpleNamespace(path="/things"))
    response = SimpleNamespace(status_code=status, json=lambda: body)
    return failure, case, response


@pytest.mark.parametrize(
    ("status", "fields", "kept"),
    [
        (422, ["items.3.day"], False),  # only fields beyond the schema: excused
        (422, ["items.3.day", "name"], True),  # another field too: a contract failure
        (422, ["name"], True),
        (422, [], True),  # no field named: nothing to excuse
        (400, ["items.3.day"], True),  # not a 422
    ],
)
def test_only_422s_naming_fields_beyond_the_schema_are_excused(
    status: int, fields: list[str], kept: bool
) -> None:
    keep = refusals_beyond_the_schema({"POST /things": {"items.*.day"}})
    body = {"errors": [{"field": field} for field in fields]}

    assert keep(None, *_refusal(status, body)) is kept


def test_refusals_carrying_an_excused_code_are_excused_in_every_operation() -> None:
    keep = refusals_beyond_the_schema({}, codes={"unknown-location"})
    known = {"errors": [{"field": "location_code", "code": "unknown-location"}]}
    other = {"errors": [{"field": "location_code", "code": "unknown-location"}, {"field": "x"}]}

    assert keep(None, *_refusal(422, known)) is False
    assert keep(None, *_refusal(422, other)) is True


def test_the_run_is_reproducible_bounded_and_checks_everything() -> None:
    config = schemathesis_config(Served(name="x", url="http://127.0.0.1:1", headers={}))

    assert isinstance(config["seed"], int)
    assert config["generation"]["mode"] == "all"
    assert config["generation"]["deterministic"] is True
    assert config["generation"]["database"] == "none"
    assert config["cache"]["enabled"] is False
    assert config["generation"]["max-examples"] <= 25
    assert config["checks"]["enabled"] is True
    assert all(config["phases"][phase]["enabled"] for phase in config["phases"])
