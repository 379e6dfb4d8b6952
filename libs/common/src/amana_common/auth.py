"""Authentication and authorisation shared by every service (and the gateway).

Every route declares a policy: `require(Role.X, ...)` (a bearer JWT carrying one of the roles)
or `public(reason)` (health, metrics, signed webhooks). A test enumerates the routes of every
service and fails on a route without one. Services verify the token themselves, so a call that
bypasses the gateway is refused too.

Tokens: in development and test, HS256 tokens signed with `<PREFIX>JWT_SECRET` (the gateway's
`POST /auth/token` issues them); with `<PREFIX>JWKS_URL` set (production), tokens of an
external OpenID Connect issuer (Keycloak-compatible claims) verified against its JWKS.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from amana_common.errors import Problem
from amana_common.settings import ServiceSettings

POLICY_ATTRIBUTE = "__amana_policy__"
ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
CLOCK_LEEWAY_S = 30
VERIFIED_TOKEN_CACHE = 10_000


class Role(StrEnum):
    admin = "admin"
    registrar = "registrar"
    programme_manager = "programme_manager"
    payroll_approver = "payroll_approver"
    finance = "finance"
    provider = "provider"
    auditor = "auditor"
    analyst = "analyst"


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[Role]
    provider_id: UUID | None = None

    @property
    def is_provider_only(self) -> bool:
        """A PSP's own token: it may see that provider's data and nothing else."""
        return self.roles == {Role.provider}

    def primary_role(self) -> str:
        return sorted(self.roles)[0] if self.roles else ""


def unauthenticated(detail: str) -> Problem:
    return Problem(401, "unauthenticated", detail, headers={"WWW-Authenticate": "Bearer"})


class TokenVerifier:
    """Verifies bearer tokens against the service's settings; one per app."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.secret = settings.jwt_secret
        self.jwks = (
            jwt.PyJWKClient(settings.jwks_url, cache_keys=True) if settings.jwks_url else None
        )
        # Clients reuse a token for many calls; decoding it costs more than the rest of a
        # gateway hop. A token already verified is answered from here until it expires.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached[1]:
            principal: Principal = cached[0]
            return principal
        principal, expires_at = await self._decode(token)
        self._verified[token] = (principal, expires_at)
        if len(self._verified) > VERIFIED_TOKEN_CACHE:
            self._verified.popitem(last=False)
        return principal

    async def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            key, algorithms = await self._key_for(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=CLOCK_LEEWAY_S,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise unauthenticated("the token has expired") from error
        except jwt.InvalidAudienceError as error:
            raise unauthenticated("the token is not meant for this audience") from error
        except jwt.InvalidIssuerError as error:
            raise unauthenticated("the token comes from an untrusted issuer") from error
        except (jwt.PyJWTError, ValueError) as error:
            raise unauthenticated(f"the token is not valid: {error}") from error
        return principal_from_claims(claims, self.audience), float(claims["exp"])

    async def _key_for(self, token: str) -> tuple[Any, list[str]]:
        if self.jwks is None:
            return self.secret, ["HS256"]
        signing_key = await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)
        return signing_key.key, ASYMMETRIC_ALGORITHMS


def principal_from_claims(claims: dict[str, Any], audience: str) -> Principal:
    """Roles from `roles`, or Keycloak's `realm_access.roles` / `resource_access.<aud>.roles`;
    names that are not Amana roles are ignored."""
    names: set[str] = set(claims.get("roles") or [])
    names.update((claims.get("realm_access") or {}).get("roles") or [])
    names.update(((claims.get("resource_access") or {}).get(audience) or {}).get("roles") or [])
    roles = frozenset(Role(name) for name in names if name in Role.__members__)
    provider_id = claims.get("provider_id")
    try:
        provider = UUID(str(provider_id)) if provider_id else None
    except ValueError as error:
        raise unauthenticated("the token's provider_id is not a UUID") from error
    if Role.provider in roles and provider is None:
        raise unauthenticated("a provider token must carry a provider_id claim")
    return Principal(subject=str(claims["sub"]), roles=roles, provider_id=provider)


def issue_token(
    settings: ServiceSettings,
    subject: str,
    roles: Iterable[Role | str],
    provider_id: UUID | None = None,
    lifetime: timedelta = timedelta(minutes=15),
) -> str:
    """An HS256 token as the development token endpoint and the tests issue them."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "iat": now,
        "exp": now + lifetime,
        "roles": sorted(str(role) for role in roles),
    }
    if provider_id is not None:
        claims["provider_id"] = str(provider_id)
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


bearer_scheme = HTTPBearer(
    auto_error=False, description="A JWT from `POST /auth/token` or your IdP"
)


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthenticated("a bearer token is required")
    verifier: TokenVerifier = request.app.state.token_verifier  # built by create_app
    principal = await verifier.verify(credentials.credentials)
    request.state.principal = principal
    return principal


def require(*roles: Role) -> Any:
    """A route dependency answering the Principal: 401 without a valid token, 403 without one
    of `roles`. `admin` is not implied: list it where it belongs."""
    allowed = frozenset(roles)

    async def policy(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
    ) -> Principal:
        principal = await authenticate(request, credentials)
        if not principal.roles & allowed:
            raise Problem(403, "forbidden", "your role may not do this")
        return principal

    setattr(policy, POLICY_ATTRIBUTE, sorted(allowed))
    return Depends(policy)


def public(reason: str) -> Any:
    """Marks a route as deliberately open (health, metrics, signed webhooks), with the reason."""

    async def open_route() -> None:
        return None

    setattr(open_route, POLICY_ATTRIBUTE, f"public: {reason}")
    return Depends(open_route)


def ensure_provider_scope(principal: Principal, provider_id: UUID | None) -> None:
    """A provider token may touch only its own provider's objects; anything else is 404, so
    that other providers' objects cannot even be discovered."""
    if principal.is_provider_only and principal.provider_id != provider_id:
        raise Problem(404, "not-found", "no such object")


def route_policy(dependency_calls: Iterable[Callable[..., Awaitable[Any] | Any]]) -> Any:
    """The policy among a route's dependency callables, or None (used by the route audit)."""
    for call in dependency_calls:
        policy = getattr(call, POLICY_ATTRIBUTE, None)
        if policy is not None:
            return policy
    return None
