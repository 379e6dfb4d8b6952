"""Gateway configuration (`GATEWAY_*`). Lists are JSON in the environment, e.g.
GATEWAY_ROUTES='[{"prefix": "/registry", "service": "registry", "upstream": "http://registry:8000"}]'
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, Field, field_validator, model_validator

from amana_common.auth import Role
from amana_common.catalog import load_catalog
from amana_common.settings import ServiceSettings, service_config

DEV_PROVIDER_ID = UUID("01930000-0000-7000-8000-00000000d0d0")


class Route(BaseModel):
    """`prefix` at the gateway goes to `upstream` + `upstream_prefix` + the rest of the path."""

    prefix: str = Field(pattern=r"^/[a-z0-9-]+$")
    service: str
    upstream: str = Field(pattern=r"^https?://")
    upstream_prefix: str = ""
    timeout_s: float = Field(default=30, gt=0, le=600)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    public_paths: list[str] = Field(
        default_factory=list,
        description="Paths below the prefix (regular expressions) that need no token, such as "
        "provider webhooks, which the upstream authenticates by signature",
    )


class ClientCredentials(BaseModel):
    """A client of the development token endpoint; only the secret's hash is configured."""

    client_id: str = Field(pattern=r"^[A-Za-z0-9._-]{3,64}$")
    secret_hash: str = Field(description="pbkdf2_sha256$<iterations>$<salt>$<hash>")
    roles: list[Role] = Field(min_length=1)
    provider_id: UUID | None = None


def local_routes() -> list[Route]:
    """Every route of the service catalog, to the services `make run` starts on loopback."""
    catalog = load_catalog()
    return [
        Route.model_validate(route)
        for route in catalog.gateway_routes(lambda service: f"http://127.0.0.1:{service.port}")
    ]


class GatewaySettings(ServiceSettings):
    model_config = service_config("GATEWAY_")
    has_database: ClassVar[bool] = False
    # The client address is the gateway's to work out (trusted_proxies), not uvicorn's: its
    # default trusts X-Forwarded-For from loopback.
    server_proxy_headers: ClassVar[bool] = False

    service_name: str = "gateway"
    port: int = 8000
    routes: list[Route] = Field(default_factory=local_routes)
    active_services: list[str] | None = Field(
        default=None,
        description="Services that are deployed (default: every route's service); /readyz and "
        "/openapi.json consult only these",
    )
    dev_token_endpoint: bool = Field(
        default=False,
        description="Serve POST /auth/token (its clients: `clients`, or in development the "
        "published <role>-dev ones). Never in production",
    )
    clients: list[ClientCredentials] = Field(default_factory=list)
    token_lifetime_s: int = Field(default=900, ge=60, le=86_400)
    rate_limit_per_s: float = Field(default=100, gt=0)
    rate_limit_burst: int = Field(default=200, gt=0)
    max_concurrent_per_client: int = Field(
        default=32,
        gt=0,
        description="Requests one client (token subject or address) may have "
        "in flight at once; more are 429",
    )
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description="Networks of the proxies in front of the gateway (the ingress): only their "
        "X-Forwarded-For hops are believed",
    )
    public_base_url: str = Field(
        default="",
        pattern=r"^(https?://[^/?#\s]+)?$",
        description="The gateway's public URL (https://api.example.org) for absolute Location "
        "headers; empty: Location is a path",
    )
    cors_origins: list[str] = Field(default_factory=list)
    upstream_connections: int = Field(default=100, gt=0, description="Connections per upstream")
    upstream_connect_timeout_s: float = Field(
        default=5, gt=0, le=60, description="Connecting, or waiting for a pooled connection"
    )
    body_idle_timeout_s: float = Field(
        default=15, gt=0, le=600, description="A request body that stalls this long is 408"
    )

    @field_validator("routes")
    @classmethod
    def _distinct_prefixes(cls, routes: list[Route]) -> list[Route]:
        prefixes = [route.prefix for route in routes]
        if len(prefixes) != len(set(prefixes)):
            raise ValueError("route prefixes must be distinct")
        return routes

    @model_validator(mode="after")
    def _production_rules(self) -> GatewaySettings:
        if self.is_production and "*" in self.cors_origins:
            raise ValueError("production refuses CORS origin '*': list the frontends' origins")
        if self.is_production and self.dev_token_endpoint:
            raise ValueError(
                "production refuses GATEWAY_DEV_TOKEN_ENDPOINT: tokens come from the identity "
                "provider (GATEWAY_JWKS_URL)"
            )
        if self.token_lifetime_s > self.jwt_max_lifetime_s:
            raise ValueError(
                "token_lifetime_s exceeds jwt_max_lifetime_s: its tokens would be refused"
            )
        return self

    def deployed_routes(self) -> list[Route]:
        active = self.active_services
        return [r for r in self.routes if active is None or r.service in active]
