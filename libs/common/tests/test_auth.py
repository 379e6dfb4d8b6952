"""Token verification: HS256 with a shared secret, or an OpenID Connect issuer's JWKS."""

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from amana_common import auth
from amana_common.auth import (
    Principal,
    Role,
    TokenVerifier,
    ensure_provider_scope,
    issue_token,
    principal_from_claims,
)
from amana_common.errors import Problem
from amana_common.settings import ServiceSettings
from amana_common.testing.clients import serving

ISSUER = "https://idp.example.org/realms/amana"
PROVIDER = UUID("01930000-0000-7000-8000-0000000000aa")
OTHER_PROVIDER = UUID("01930000-0000-7000-8000-0000000000bb")
REFRESH_S = 120
WITHOUT = object()  # a claim the token leaves out


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return public | {"kid": kid, "use": "sig", "alg": "RS256"}


@dataclass
class Jwks:
    """What the identity provider publishes; a test changes it while it is served."""

    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetches: int = 0
    down: bool = False


def jwks_app(jwks: Jwks) -> FastAPI:
    app = FastAPI()

    @app.get("/certs")
    async def certs() -> JSONResponse:
        jwks.fetches += 1
        if jwks.down:
            return JSONResponse({"error": "down"}, status_code=503)
        return JSONResponse({"keys": list(jwks.keys.values())})

    return app


def keycloak_token(key: rsa.RSAPrivateKey, kid: str, **claims: Any) -> str:
    now = datetime.now(UTC)
    body = {
        "iss": ISSUER,
        "aud": "amana",
        "sub": "svc-psp-portal",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "realm_access": {"roles": ["admin", "offline_access"]},
        "resource_access": {"amana": {"roles": ["provider"]}, "account": {"roles": ["auditor"]}},
        "provider_id": str(PROVIDER),
    } | claims
    body = {name: value for name, value in body.items() if value is not WITHOUT}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


class Clock:
    """Shifts what amana_common.auth reads as the time (its caches), not what PyJWT reads."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    shifted = Clock()
    fake_time = SimpleNamespace(
        time=shifted.time, monotonic=shifted.monotonic, perf_counter=time.perf_counter
    )
    monkeypatch.setattr(auth, "time", fake_time)
    return shifted


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
async def jwks(signing_key: rsa.RSAPrivateKey) -> AsyncIterator[tuple[Jwks, str]]:
    published = Jwks({"k1": public_jwk(signing_key, "k1")})
    async with serving(jwks_app(published)) as base:
        yield published, f"{base}/certs"


@pytest.fixture
def verifier(jwks: tuple[Jwks, str]) -> TokenVerifier:
    settings = ServiceSettings(
        environment="test", jwks_url=jwks[1], jwt_issuer=ISSUER, jwks_refresh_s=REFRESH_S
    )
    return TokenVerifier(settings)


async def test_a_keycloak_token_is_verified_through_the_jwks(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey
) -> None:
    principal = await verifier.verify(keycloak_token(signing_key, "k1"))

    assert principal == Principal(
        subject="svc-psp-portal",
        # the client's roles only: realm-wide roles (admin here) and other clients' roles
        # (account's auditor) grant nothing in Amana
        roles=frozenset({Role.provider}),
        provider_id=PROVIDER,
    )


@pytest.mark.parametrize(
    ("case", "claims"),
    [
        ("expired", {"exp": datetime.now(UTC) - timedelta(minutes=5)}),
        ("other issuer", {"iss": "https://evil.example"}),
        ("other audience", {"aud": "another-app"}),
        ("provider without provider_id", {"provider_id": None}),
        ("no iat", {"iat": WITHOUT}),
        ("lives longer than the maximum", {"exp": datetime.now(UTC) + timedelta(hours=2)}),
    ],
)
async def test_bad_claims_are_refused(
    case: str, claims: dict[str, Any], verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(Problem) as refused:
        await verifier.verify(keycloak_token(signing_key, "k1", **claims))

    assert refused.value.status == 401, case


async def test_a_token_signed_by_another_key_is_refused(verifier: TokenVerifier) -> None:
    with pytest.raises(Problem) as refused:
        await verifier.verify(keycloak_token(rsa_key(), "k1"))

    assert refused.value.status == 401


async def test_an_hs256_token_is_refused_when_the_jwks_is_configured(
    verifier: TokenVerifier,
) -> None:
    forged = issue_token(ServiceSettings(environment="test", jwt_issuer=ISSUER), "x", [Role.admin])

    with pytest.raises(Problem) as refused:
        await verifier.verify(forged)

    assert refused.value.status == 401


async def test_a_key_removed_from_the_jwks_is_refused_after_the_refresh_interval(
    verifier: TokenVerifier,
    jwks: tuple[Jwks, str],
    signing_key: rsa.RSAPrivateKey,
    clock: Clock,
) -> None:
    published, _ = jwks
    await verifier.verify(keycloak_token(signing_key, "k1", sub="before"))
    rotated = rsa_key()
    published.keys = {"k2": public_jwk(rotated, "k2")}  # k1 is withdrawn (compromised)

    clock.offset = REFRESH_S + 1

    with pytest.raises(Problem) as refused:
        await verifier.verify(keycloak_token(signing_key, "k1", sub="after"))
    assert refused.value.status == 401
    assert (await verifier.verify(keycloak_token(rotated, "k2"))).subject == "svc-psp-portal"


async def test_a_new_key_is_fetched_at_once_but_unknown_keys_do_not_flood_the_issuer(
    verifier: TokenVerifier,
    jwks: tuple[Jwks, str],
    signing_key: rsa.RSAPrivateKey,
    clock: Clock,
) -> None:
    published, _ = jwks
    await verifier.verify(keycloak_token(signing_key, "k1"))
    added = rsa_key()
    published.keys["k2"] = public_jwk(added, "k2")
    clock.offset = 11  # a while later: the first token signed by the new key

    assert (await verifier.verify(keycloak_token(added, "k2"))).roles == {Role.provider}
    fetches = published.fetches
    for n in range(20):
        with pytest.raises(Problem):
            await verifier.verify(keycloak_token(rsa_key(), f"unknown-{n}"))
    assert published.fetches - fetches <= 1


async def test_keys_are_not_trusted_past_the_refresh_while_the_issuer_is_down(
    verifier: TokenVerifier,
    jwks: tuple[Jwks, str],
    signing_key: rsa.RSAPrivateKey,
    clock: Clock,
) -> None:
    published, _ = jwks
    await verifier.verify(keycloak_token(signing_key, "k1", sub="before"))
    published.down = True

    clock.offset = REFRESH_S + 1
    with pytest.raises(Problem) as refused:
        await verifier.verify(keycloak_token(signing_key, "k1", sub="after"))

    assert refused.value.status == 503
    assert "retry-after" in {name.lower() for name in refused.value.headers or {}}


async def test_a_verified_token_is_verified_again_after_at_most_a_minute(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ServiceSettings(environment="test")
    verifier = TokenVerifier(settings)
    token = issue_token(settings, "x", [Role.admin], lifetime=timedelta(minutes=30))
    decodes = 0
    real_decode = verifier._decode

    async def counting_decode(raw: str) -> tuple[Principal, float]:
        nonlocal decodes
        decodes += 1
        return await real_decode(raw)

    monkeypatch.setattr(verifier, "_decode", counting_decode)
    await verifier.verify(token)
    await verifier.verify(token)
    assert decodes == 1

    clock.offset = 61
    await verifier.verify(token)
    assert decodes == 2


@pytest.mark.parametrize(
    "claims",
    [
        {"roles": [["admin"]]},
        {"roles": "admin"},
        {"roles": {"admin": True}},
        {"roles": [1]},
        {"sub": 42},
        {"sub": ""},
        {"provider_id": ["01930000-0000-7000-8000-0000000000aa"], "roles": ["provider"]},
        {"provider_id": 7, "roles": ["provider"]},
        {"provider_id": "not-a-uuid", "roles": ["provider"]},
        {"resource_access": ["amana"]},
        {"resource_access": {"amana": "admin"}},
        {"resource_access": {"amana": {"roles": "admin"}}},
        {"resource_access": {"amana": {"roles": [{"admin": 1}]}}},
    ],
)
def test_claims_of_an_unexpected_shape_are_401(claims: dict[str, Any]) -> None:
    with pytest.raises(Problem) as refused:
        principal_from_claims({"sub": "x", "roles": ["registrar"]} | claims, "amana")

    assert refused.value.status == 401


def test_unknown_role_names_are_ignored() -> None:
    principal = principal_from_claims({"sub": "x", "roles": ["registrar", "uma"]}, "amana")

    assert principal.roles == {Role.registrar}


@pytest.mark.parametrize(
    ("roles", "scoped"),
    [
        ({Role.provider}, True),
        ({Role.provider, Role.analyst}, True),  # analyst reads no provider data
        ({Role.provider, Role.auditor}, False),
        ({Role.provider, Role.finance}, False),
        ({Role.provider, Role.admin}, False),
        ({Role.registrar}, False),
    ],
)
def test_a_provider_token_is_scoped_unless_another_role_reads_every_provider(
    roles: set[Role], scoped: bool
) -> None:
    principal = Principal(subject="p", roles=frozenset(roles), provider_id=PROVIDER)

    ensure_provider_scope(principal, PROVIDER)
    if scoped:
        with pytest.raises(Problem) as refused:
            ensure_provider_scope(principal, OTHER_PROVIDER)
        assert refused.value.status == 404
    else:
        ensure_provider_scope(principal, OTHER_PROVIDER)
