"""The app factory: problem+json for every error, request ids, traceparent, health, metrics."""

import io
import json
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel, Field

from amana_common.errors import PROBLEM_JSON, TYPE_BASE, Problem
from amana_common.observability import current_traceparent, request_id_var
from amana_common.testing.clients import (
    app_without_database,
    captured_json_log,
    service_client,
)

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"

router = APIRouter()


class Payment(BaseModel):
    amount_minor: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


@router.get("/settled")
async def settled() -> None:
    raise Problem(409, "payment-already-settled", "payment P1 is already settled")


@router.get("/crash")
async def crash() -> None:
    raise RuntimeError("connection to db failed, password=hunter2")


@router.post("/payments")
async def create_payment(payment: Payment) -> Payment:
    return payment


@router.get("/payments/{payment_id}")
async def read_payment(payment_id: int) -> None:
    return None


@router.patch("/payments/{payment_id}")
async def change_payment(payment_id: int) -> None:
    return None


@router.get("/context")
async def context() -> dict[str, str | None]:
    return {"request_id": request_id_var.get(), "traceparent": current_traceparent()}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with service_client(app_without_database(router)) as client:
        yield client


@pytest.fixture
def error_log() -> Iterator[io.StringIO]:
    with captured_json_log("amana.errors") as stream:
        yield stream


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, object] = response.json()
    assert body["type"] == TYPE_BASE + slug
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_a_problem_is_rendered_as_problem_json(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/settled"), 409, "payment-already-settled")

    assert body["detail"] == "payment P1 is already settled"
    assert body["instance"] == "/settled"


async def test_an_unexpected_error_is_a_500_that_leaks_nothing_and_is_logged_with_ids(
    client: httpx.AsyncClient, error_log: io.StringIO
) -> None:
    response = await client.get("/crash", headers={"X-Request-Id": "req-crash-1"})

    body = assert_problem(response, 500, "internal-error")
    assert "hunter2" not in response.text
    assert body["request_id"] == "req-crash-1"
    [line] = error_log.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["request_id"] == "req-crash-1"
    assert entry["trace_id"] == response.headers["traceparent"].split("-")[1]
    assert "RuntimeError" in entry["exception"]


async def test_validation_errors_name_the_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/payments", json={"amount_minor": 0, "currency": "usd"})

    body = assert_problem(response, 422, "validation-error")
    errors = body["errors"]
    assert isinstance(errors, list)
    assert {(e["field"], e["in"]) for e in errors} == {
        ("amount_minor", "body"),
        ("currency", "body"),
    }
    assert all(e["message"] for e in errors)


async def test_a_missing_field_is_named(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.post("/payments", json={"currency": "KES"}), 422, "validation-error"
    )

    assert body["errors"] == [{"field": "amount_minor", "in": "body", "message": "Field required"}]


async def test_malformed_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/payments",
        content=b'{"amount_minor": 100, "currency": ',
        headers={"Content-Type": "application/json"},
    )

    assert_problem(response, 400, "malformed-json")


async def test_unknown_route_and_wrong_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/no/such/route"), 404, "not-found")

    response = await client.delete("/payments")
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize("method", ["DELETE", "PUT", "OPTIONS"])
async def test_allow_names_every_method_of_the_path(client: httpx.AsyncClient, method: str) -> None:
    """Two routes serve /payments/{id}: Starlette's 405 named only the first one's methods."""
    response = await client.request(method, "/payments/7")

    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET, PATCH"


async def test_a_valid_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/context", headers={"X-Request-Id": "partner-42.a:b_c"})

    assert response.headers["x-request-id"] == "partner-42.a:b_c"
    assert response.json()["request_id"] == "partner-42.a:b_c"


@pytest.mark.parametrize("incoming", [None, "", "has spaces", "x" * 129, "semi;colon"])
async def test_a_missing_or_invalid_request_id_is_replaced(
    client: httpx.AsyncClient, incoming: str | None
) -> None:
    headers = {} if incoming is None else {"X-Request-Id": incoming}

    response = await client.get("/context", headers=headers)

    generated = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{24}", generated)
    assert response.json()["request_id"] == generated


async def test_traceparent_continues_the_callers_trace_with_a_new_span(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/context", headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )

    outgoing = response.headers["traceparent"]
    match = TRACEPARENT.fullmatch(outgoing)
    assert match is not None
    assert match.group(1) == CALLER_TRACE
    assert match.group(2) != CALLER_SPAN
    assert response.json()["traceparent"] == outgoing


@pytest.mark.parametrize("incoming", [None, "garbage", f"00-{'0' * 32}-{CALLER_SPAN}-01"])
async def test_a_fresh_trace_starts_without_a_valid_traceparent(
    client: httpx.AsyncClient, incoming: str | None
) -> None:
    headers = {} if incoming is None else {"traceparent": incoming}

    first = (await client.get("/context", headers=headers)).headers["traceparent"]
    second = (await client.get("/context", headers=headers)).headers["traceparent"]

    first_match, second_match = TRACEPARENT.fullmatch(first), TRACEPARENT.fullmatch(second)
    assert first_match is not None and second_match is not None
    assert first_match.group(1) != second_match.group(1)
    assert first_match.group(1) != "0" * 32


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def requests_total(metrics: str, route: str, status: int) -> float:
    labels = f'method="GET",route="{route}",service="demo",status="{status}"'
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("amana_http_requests_total{"):
            found = name[name.index("{") + 1 : -1].split(",")
            if sorted(found) == labels.split(","):
                return float(value)
    return 0.0


async def test_metrics_count_requests_by_route_template_and_status(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/metrics")).text

    await client.get("/settled")
    await client.get("/settled")
    await client.get("/no/such/route/123")
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    assert requests_total(after, "/settled", 409) == requests_total(before, "/settled", 409) + 2
    assert requests_total(after, "unmatched", 404) == requests_total(before, "unmatched", 404) + 1
    assert "/no/such/route/123" not in after


async def test_every_operation_documents_the_problems_the_shared_machinery_answers(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()

    create = document["paths"]["/payments"]["post"]["responses"]
    read = document["paths"]["/payments/{payment_id}"]["get"]["responses"]
    assert {"400", "413", "415", "422"} <= set(create)
    assert {"400", "422"} <= set(read) and "415" not in read
    problem = create["415"]["content"][PROBLEM_JSON]["schema"]["$ref"]
    assert problem == "#/components/schemas/ProblemDetails"
    assert "ProblemDetails" in document["components"]["schemas"]
