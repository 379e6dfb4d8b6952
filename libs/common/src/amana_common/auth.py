"""Authentication and authorisation shared by every service (and the gateway).

Every route declares a policy: `require(Role.X, ...)` (a bearer JWT carrying one of the roles)
or `public(reason)` (health, metrics, signed webhooks). A test enumerates the routes of every
service and fails on a route without one. Services verify the token themselves, so a call that
bypasses the gateway is refused too.

Tokens: HS256 tokens signed with `<PREFIX>JWT_SECRET` (development and test; the gateway's
development token endpoint issues them), or with `<PREFIX>JWKS_URL` set (production), tokens
of an external OpenID Connect issuer verified against its JWKS. Roles come from the `roles`
claim and from Keycloak's `resource_access.<audience>.roles` (the roles of the Amana client),
never from realm-wide roles, which other applications of the realm hand out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

import httpx
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amana_common.errors import Problem
from amana_common.settings import ServiceSettings

log = logging.getLogger("amana.auth")

POLICY_ATTRIBUTE = "__amana_policy__"
ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
CLOCK_LEEWAY_S = 30
VERIFIED_TOKEN_CACHE = 10_000
# A verified token is trusted from memory this long at most, so a key withdrawn from the JWKS
# stops working within the JWKS refresh interval plus this.
VERIFIED_TOKEN_TTL_S = 60.0
# An unknown key id fetches the JWKS again at most this often (a new key is picked up at once,
# made-up key ids do not turn into a flood of requests to the identity provider).
JWKS_REFETCH_MIN_INTERVAL_S = 10.0
JWKS_FETCH_TIMEOUT_S = 5.0


class Role(StrEnum):
    admin = "admin"
    registrar = "registrar"
    programme_manager = "programme_manager"
    payroll_approver = "payroll_approver"
    finance = "finance"
    provider = "provider"
    auditor = "auditor"
    analyst = "analyst"


# Roles that read every provider's data; a provider token with none of them is scoped to its
# own provider (analyst reads no provider data, so it grants nothing more).
READS_EVERY_PROVIDER = frozenset(
    {
        Role.admin,
        Role.finance,
        Role.registrar,
        Role.programme_manager,
        Role.payroll_approver,
        Role.auditor,
    }
)


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[Role]
    provider_id: UUID | None = None

    @property
    def is_provider_scoped(self) -> bool:
        """A PSP's token: it may see its own provider's data and no other provider's, unless
        another of its roles reads every provider."""
        return Role.provider in self.roles and not self.roles & READS_EVERY_PROVIDER

    def primary_role(self) -> str:
        return sorted(self.roles)[0] if self.roles else ""


def unauthenticated(detail: str) -> Problem:
    return Problem(401, "unauthenticated", detail, headers={"WWW-Authenticate": "Bearer"})


class JwksKeys:
    """The identity provider's signing keys by key id, fetched again once `refresh_s` old: a
    key the issuer withdrew is trusted no longer than that."""

    def __init__(self, url: str, refresh_s: float) -> None:
        self.url = url
        self.refresh_s = refresh_s
        self.refetch_interval_s = min(JWKS_REFETCH_MIN_INTERVAL_S, refresh_s)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK:
        if self._should_fetch(kid):
            async with self._lock:  # one fetch for every request waiting on it
                if self._should_fetch(kid):
                    await self._fetch()
        if self._stale():
            raise Problem(
                503,
                "identity-provider-unavailable",
                "the identity provider's keys cannot be fetched: try again shortly",
                headers={"Retry-After": str(math.ceil(self.refetch_interval_s))},
            )
        key = self._keys.get(kid)
        if key is None:
            raise unauthenticated("the token's signing key is not the issuer's")
        return key

    def _should_fetch(self, kid: str) -> bool:
        """When the keys are stale or the kid is new, unless a fetch was tried just now (an
        identity provider that is down, or made-up kids, are not asked again at once)."""
        recently_tried = time.monotonic() - self._attempted_at < self.refetch_interval_s
        return (self._stale() or kid not in self._keys) and not recently_tried

    def _stale(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self.refresh_s

    async def _fetch(self) -> None:
        self._attempted_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=JWKS_FETCH_TIMEOUT_S) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                document = response.json()
            keys = _signing_keys(document)
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as error:
            log.warning("JWKS fetch from %s failed: %r", self.url, error)
            if self._stale():
                self._keys = {}
            return
        self._keys = keys
        self._fetched_at = time.monotonic()


def _signing_keys(document: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            keys[str(entry["kid"])] = jwt.PyJWK(entry)
        except (jwt.PyJWTError, KeyError) as error:
            log.info("JWKS key skipped: %r", error)
    return keys


class TokenVerifier:
    """Verifies bearer tokens against the service's settings; one per app."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.secret = settings.jwt_secret
        self.max_lifetime_s = settings.jwt_max_lifetime_s
        self.jwks = (
            JwksKeys(settings.jwks_url, settings.jwks_refresh_s) if settings.jwks_url else None
        )
        # Clients reuse a token for many calls; decoding it costs more than the rest of a
        # gateway hop. A verified token is answered from here for a minute at most.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified less than a minute ago, else None."""
        entry = self._verified.get(token)
        if entry is None or time.monotonic() >= entry[1]:
            return None
        return entry[0]

    async def verify(self, token: str) -> Principal:
        principal = self.cached(token)
        if principal is not None:
            return principal
        principal, expires_at = await self._decode(token)
        trusted_for = min(VERIFIED_TOKEN_TTL_S, expires_at - time.time())
        self._verified[token] = (principal, time.monotonic() + trusted_for)
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
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise unauthenticated(f"the token is not valid: {error}") from error
        lifetime = float(claims["exp"]) - float(claims["iat"])
        if lifetime > self.max_lifetime_s:
            raise unauthenticated(
                f"the token lives {lifetime:.0f}s, longer than the {self.max_lifetime_s}s allowed"
            )
        return principal_from_claims(claims, self.audience), float(claims["exp"])

    async def _key_for(self, token: str) -> tuple[Any, list[str]]:
        if self.jwks is None:
            return self.secret, ["HS256"]
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str):
            raise unauthenticated("the token names no signing key (kid)")
        return (await self.jwks.key(kid)).key, ASYMMETRIC_ALGORITHMS


class _ClientRoles(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    roles: list[str] = Field(default_factory=list)


class _Claims(BaseModel):
    """The claims Amana reads, in the only shapes it accepts (strict: no coercion)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    sub: str = Field(min_length=1, max_length=255)
    roles: list[str] = Field(default_factory=list)
    resource_access: dict[str, Any] = Field(default_factory=dict)
    provider_id: str | None = None


def principal_from_claims(claims: dict[str, Any], audience: str) -> Principal:
    """Roles from `roles` and `resource_access.<audience>.roles`; names that are not Amana
    roles are ignored; a claim of another shape than expected refuses the token."""
    try:
        parsed = _Claims.model_validate(claims)
        client = _ClientRoles.model_validate(parsed.resource_access.get(audience) or {})
    except ValidationError as error:
        fields = sorted({str(e["loc"][0]) if e["loc"] else "claims" for e in error.errors()})
        raise unauthenticated(f"the token's claims are malformed: {', '.join(fields)}") from None
    names = set(parsed.roles) | set(client.roles)
    roles = frozenset(Role(name) for name in names if name in Role.__members__)
    try:
        provider = UUID(parsed.provider_id) if parsed.provider_id else None
    except ValueError as error:
        raise unauthenticated("the token's provider_id is not a UUID") from error
    if Role.provider in roles and provider is None:
        raise unauthenticated("a provider token must carry a provider_id claim")
    return Principal(subject=parsed.sub, roles=roles, provider_id=provider)


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
    if principal.is_provider_scoped and principal.provider_id != provider_id:
        raise Problem(404, "not-found", "no such object")


def route_policy(dependency_calls: Iterable[Callable[..., Awaitable[Any] | Any]]) -> Any:
    """The policy among a route's dependency callables, or None (used by the route audit)."""
    for call in dependency_calls:
        policy = getattr(call, POLICY_ATTRIBUTE, None)
        if policy is not None:
            return policy
    return None
