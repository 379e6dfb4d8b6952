import hashlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import quote

import httpx

from amana_common.auth import Role, issue_token
from gateway.paths import ambiguity
from gateway.service import PATH_SEGMENT_PATTERN, _as_the_gateway_answers

from .conftest import Recorder, gateway_client, gateway_settings

PROBLEM = "application/problem+json"
HOUSEHOLD = {
    "location_code": "KE-047-0101",
    "members": [
        {
            "given_name": "Achieng",
            "family_name": "Odhiambo",
            "sex": "female",
            "date_of_birth": "1990-05-05",
            "relationship": "head",
        }
    ],
}


async def token(gateway: httpx.AsyncClient, client_id: str, secret: str) -> dict[str, str]:
    response = await gateway.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_a_registrar_enrols_through_the_gateway(gateway: httpx.AsyncClient) -> None:
    headers = await token(gateway, "registrar-1", "s3cret!")

    created = await gateway.post("/registry/households", json=HOUSEHOLD, headers=headers)
    read = await gateway.get(created.headers["location"], headers=headers)

    assert created.status_code == 201, created.text
    assert created.headers["location"].startswith("/registry/households/")
    assert read.status_code == 200
    assert read.json()["id"] == created.json()["id"]


async def test_the_service_enforces_its_roles_behind_the_gateway(
    gateway: httpx.AsyncClient,
) -> None:
    headers = await token(gateway, "analyst-1", "an4lyst")

    response = await gateway.post("/registry/households", json=HOUSEHOLD, headers=headers)

    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM


async def test_refused_tokens_are_401_and_never_reach_an_upstream(
    gateway: httpx.AsyncClient, recorder: Recorder
) -> None:
    settings = gateway_settings({"registry": "http://x", "recording": "http://x"})
    wrong_secret = settings.model_copy(update={"jwt_secret": "another-secret-0123456789abcdefghij"})
    wrong_audience = settings.model_copy(update={"jwt_audience": "not-amana"})
    tokens = {
        "none": None,
        "expired": issue_token(settings, "c", [Role.admin], lifetime=timedelta(minutes=-5)),
        "wrong signature": issue_token(wrong_secret, "c", [Role.admin]),
        "wrong audience": issue_token(wrong_audience, "c", [Role.admin]),
        "garbage": "abc.def.ghi",
    }
    for case, value in tokens.items():
        headers = {"Authorization": f"Bearer {value}"} if value else {}
        response = await gateway.post("/rec/echo/x", content=b"{}", headers=headers)
        assert response.status_code == 401, case
        assert response.headers["content-type"] == PROBLEM, case
    assert recorder.requests == []


async def test_webhook_paths_pass_without_a_token(
    gateway: httpx.AsyncClient, recorder: Recorder
) -> None:
    response = await gateway.post("/rec/echo/webhooks/psp-1", content=b'{"signed": true}')

    assert response.status_code == 200
    assert recorder.requests == [{"path": "/echo/webhooks/psp-1", "size": 16}]


async def test_request_id_traceparent_and_forwarding_headers_reach_the_upstream(
    gateway: httpx.AsyncClient,
) -> None:
    headers = await token(gateway, "registrar-1", "s3cret!")
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers |= {"traceparent": f"00-{trace}-00f067aa0ba902b7-01", "X-Request-Id": "req-42"}

    response = await gateway.get("/rec/echo/a/b?x=1&x=2", headers=headers)

    seen = response.json()["headers"]
    assert response.json()["path"] == "/echo/a/b"
    assert response.json()["query"] == "x=1&x=2"
    assert seen["x-request-id"] == "req-42" == response.headers["x-request-id"]
    assert seen["traceparent"].startswith(f"00-{trace}-")
    assert seen["traceparent"] == response.headers["traceparent"]
    assert seen["x-forwarded-for"] == "203.0.113.7"
    assert seen["x-forwarded-prefix"] == "/rec"
    assert seen["authorization"].startswith("Bearer ")
    assert response.headers["location"] == "/rec/echo/created"


async def test_over_the_rate_is_429_with_retry_after(
    upstreams: dict[str, str], recorder: Recorder
) -> None:
    settings = gateway_settings(upstreams, rate_limit_per_s=0.5, rate_limit_burst=3)
    async for gateway in gateway_client(settings):
        headers = await token(gateway, "registrar-1", "s3cret!")
        statuses = [
            (await gateway.get("/rec/echo/r", headers=headers)).status_code for _ in range(4)
        ]
        refused = await gateway.get("/rec/echo/r", headers=headers)

    assert statuses == [200, 200, 200, 429]  # the token request counted against the address
    assert len(recorder.requests) == 3, "refused requests never reach the upstream"
    assert refused.headers["content-type"] == PROBLEM
    assert int(refused.headers["retry-after"]) >= 1


async def test_anonymous_callers_are_rate_limited_by_address(upstreams: dict[str, str]) -> None:
    settings = gateway_settings(upstreams, rate_limit_per_s=0.5, rate_limit_burst=2)
    async for gateway in gateway_client(settings):
        statuses = [(await gateway.get("/rec/echo/r")).status_code for _ in range(3)]

    assert statuses == [401, 401, 429]


async def test_a_declared_body_over_the_route_limit_is_413_before_any_upstream(
    gateway: httpx.AsyncClient, recorder: Recorder
) -> None:
    headers = await token(gateway, "registrar-1", "s3cret!")

    response = await gateway.post("/rec/echo/x", content=b"x" * (64 * 1024 + 1), headers=headers)

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert recorder.requests == []


async def test_a_chunked_body_over_the_route_limit_is_413(
    gateway: httpx.AsyncClient, recorder: Recorder
) -> None:
    headers = await token(gateway, "registrar-1", "s3cret!")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    response = await gateway.post("/rec/echo/x", content=chunks(), headers=headers)

    assert response.status_code == 413
    assert all(r["size"] <= 64 * 1024 for r in recorder.requests)


async def test_large_bodies_stream_through_intact_both_ways(gateway: httpx.AsyncClient) -> None:
    headers = await token(gateway, "registrar-1", "s3cret!")
    payload = bytes(range(256)) * (20 * 4096)  # 20 MiB

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 1 << 20):
            yield payload[start : start + (1 << 20)]

    uploaded = await gateway.post("/bulk/import", content=chunks(), headers=headers)
    downloaded = await gateway.get("/rec/big", headers=headers)

    assert uploaded.status_code == 200
    assert uploaded.json()["size"] == len(payload)
    assert (
        hashlib.sha256(downloaded.content).hexdigest()
        == hashlib.sha256(b"x" * 65536 * 64).hexdigest()
    )


async def test_an_unreachable_upstream_is_502_problem(gateway: httpx.AsyncClient) -> None:
    headers = await token(gateway, "registrar-1", "s3cret!")

    response = await gateway.get("/gone/anything", headers=headers)

    assert response.status_code == 502
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/bad-gateway")


async def test_a_slow_upstream_is_504_problem_after_the_route_timeout(
    gateway: httpx.AsyncClient,
) -> None:
    headers = await token(gateway, "registrar-1", "s3cret!")

    response = await gateway.get("/rec/slow", headers=headers)

    assert response.status_code == 504
    assert response.json()["type"].endswith("/gateway-timeout")


async def test_token_endpoint_refuses_bad_credentials(gateway: httpx.AsyncClient) -> None:
    wrong = await gateway.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "registrar-1",
            "client_secret": "no",
        },
    )
    unknown = await gateway.post(
        "/auth/token",
        json={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    grant = await gateway.post("/auth/token", data={"grant_type": "password"})
    basic = await gateway.post(
        "/auth/token", auth=("registrar-1", "s3cret!"), data={"grant_type": "client_credentials"}
    )

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["type"].endswith("/invalid-client")
    assert grant.status_code == 400
    assert grant.json()["errors"][0]["field"] == "grant_type"
    assert basic.status_code == 200
    assert basic.json()["scope"] == "registrar"


async def test_production_serves_no_token_endpoint(upstreams: dict[str, str]) -> None:
    settings = gateway_settings(
        upstreams,
        environment="production",
        jwks_url="https://idp.example.org/certs",
        dev_token_endpoint=False,
    )
    async for gateway in gateway_client(settings):
        response = await gateway.post("/auth/token", data={"grant_type": "client_credentials"})

    assert response.status_code == 404


async def test_one_openapi_document_for_every_service(gateway: httpx.AsyncClient) -> None:
    document = (await gateway.get("/openapi.json")).json()
    docs = await gateway.get("/docs")

    assert "/registry/households" in document["paths"]
    assert "/registry/households/{household_id}" in document["paths"]
    assert "/auth/token" in document["paths"]
    assert "/registry/healthz" not in document["paths"]
    assert "registry.HouseholdOut" in document["components"]["schemas"]
    enrol = document["paths"]["/registry/households"]["post"]
    schema_ref = enrol["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref == "#/components/schemas/registry.HouseholdIn"
    assert enrol["security"] == [{"HTTPBearer": []}]
    assert "gone" in document["info"]["x-unavailable-services"]
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "cdn" not in docs.text.lower(), "the docs must work without internet access"
    bundle = await gateway.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000


async def test_the_merged_document_says_what_the_gateway_itself_answers(
    gateway: httpx.AsyncClient,
) -> None:
    document = (await gateway.get("/openapi.json")).json()

    read = document["paths"]["/registry/households/{household_id}"]["get"]
    assert {"400", "429", "502", "504"} <= set(read["responses"])
    problem = read["responses"]["429"]["content"][PROBLEM]["schema"]["$ref"]
    assert problem.rsplit("/", 1)[-1] in document["components"]["schemas"]
    token_body = document["paths"]["/auth/token"]["post"]["requestBody"]["content"]
    assert set(token_body) == {"application/x-www-form-urlencoded", "application/json"}


def test_free_text_path_parameters_document_what_the_gateway_lets_through() -> None:
    item = {
        "get": {
            "parameters": [
                {"name": "number", "in": "path", "schema": {"type": "string"}},
                {"name": "id", "in": "path", "schema": {"type": "string", "format": "uuid"}},
            ],
            "responses": {},
        }
    }

    number, identifier = _as_the_gateway_answers(item)["get"]["parameters"]

    assert number["schema"]["pattern"] == PATH_SEGMENT_PATTERN
    assert "pattern" not in identifier["schema"]
    for segment in ["P-1", ".a", "...", "é"]:
        assert re.fullmatch(PATH_SEGMENT_PATTERN, segment)
    for segment in [".", "..", "", "a/b", "a\\b", "a\x01"]:
        assert not re.fullmatch(PATH_SEGMENT_PATTERN, segment)
        raw = f"/x/{quote(segment, safe='.')}/y".encode()
        assert ambiguity(raw, f"/x/{segment}/y"), "what the pattern refuses, the gateway does"


async def test_readiness_aggregates_the_upstreams(
    gateway: httpx.AsyncClient, upstreams: dict[str, str]
) -> None:
    degraded = await gateway.get("/readyz")
    settings = gateway_settings(upstreams, active_services=["registry", "recording", "bulk"])
    async for healthy_gateway in gateway_client(settings):
        ready = await healthy_gateway.get("/readyz")

    assert degraded.status_code == 503
    assert "upstream:gone" in degraded.json()["detail"]
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["upstream:registry"] == "ok"


async def test_cors_preflight_allows_only_configured_origins(gateway: httpx.AsyncClient) -> None:
    allowed = await gateway.options(
        "/registry/households",
        headers={"Origin": "https://ops.example.org", "Access-Control-Request-Method": "POST"},
    )
    refused = await gateway.options(
        "/registry/households",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )

    assert allowed.headers["access-control-allow-origin"] == "https://ops.example.org"
    assert "access-control-allow-origin" not in refused.headers
