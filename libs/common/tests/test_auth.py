"""Token verification: HS256 in development, an OpenID Connect issuer's JWKS in production."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from amana_common.auth import Principal, Role, TokenVerifier, issue_token
from amana_common.errors import Problem
from amana_common.settings import ServiceSettings
from amana_common.testing.clients import serving

ISSUER = "https://idp.example.org/realms/amana"
PROVIDER = UUID("01930000-0000-7000-8000-0000000000aa")


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_app(key: rsa.RSAPrivateKey, kid: str) -> FastAPI:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    app = FastAPI()

    @app.get("/certs")
    async def certs() -> JSONResponse:
        return JSONResponse({"keys": [public | {"kid": kid, "use": "sig", "alg": "RS256"}]})

    return app


def keycloak_token(key: rsa.RSAPrivateKey, kid: str, **claims: Any) -> str:
    now = datetime.now(UTC)
    body = {
        "iss": ISSUER,
        "aud": "amana",
        "sub": "svc-psp-portal",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "realm_access": {"roles": ["provider", "offline_access"]},
        "resource_access": {"amana": {"roles": ["auditor"]}},
        "provider_id": str(PROVIDER),
    } | claims
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
async def verifier(signing_key: rsa.RSAPrivateKey) -> AsyncIterator[TokenVerifier]:
    async with serving(jwks_app(signing_key, "k1")) as base:
        settings = ServiceSettings(jwks_url=f"{base}/certs", jwt_issuer=ISSUER)
        yield TokenVerifier(settings)


async def test_a_keycloak_token_is_verified_through_the_jwks(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey
) -> None:
    principal = await verifier.verify(keycloak_token(signing_key, "k1"))

    assert principal == Principal(
        subject="svc-psp-portal",
        roles=frozenset({Role.provider, Role.auditor}),  # offline_access is no Amana role
        provider_id=PROVIDER,
    )


@pytest.mark.parametrize(
    ("case", "claims"),
    [
        ("expired", {"exp": datetime.now(UTC) - timedelta(minutes=5)}),
        ("other issuer", {"iss": "https://evil.example"}),
        ("other audience", {"aud": "another-app"}),
        ("provider without provider_id", {"provider_id": None}),
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
    forged = issue_token(ServiceSettings(jwt_issuer=ISSUER), "x", [Role.admin])

    with pytest.raises(Problem) as refused:
        await verifier.verify(forged)

    assert refused.value.status == 401


async def test_a_verified_token_is_decoded_again_once_its_cache_entry_lapses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = ServiceSettings()
    verifier = TokenVerifier(settings)
    token = issue_token(settings, "x", [Role.admin])
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

    verifier._verified[token] = (verifier._verified[token][0], 0.0)  # its expiry has passed
    await verifier.verify(token)
    assert decodes == 2
