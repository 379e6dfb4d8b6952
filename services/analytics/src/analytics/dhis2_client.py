"""Sends a data value set to DHIS2's `/api/dataValueSets` with httpx and reads its answer.

The base URL passed the outbound URL policy when the settings were loaded (an allowlisted
host, https outside loopback development); here, in production, the host's addresses are
resolved again and a private or local answer is refused before connecting. Redirects are
not followed. Credentials: a personal access token (`Authorization: ApiToken ...`) or basic
authentication.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from analytics.dhis2 import Dhis2Mapping, ImportSummary, import_summary
from analytics.settings import AnalyticsSettings

MAX_ANSWER_BYTES = 1_048_576


@dataclass(frozen=True)
class PushResult:
    status: str
    http_status: int | None
    summary: ImportSummary | None
    error: str | None


class NotConfigured(ValueError):
    pass


def import_url(settings: AnalyticsSettings, mapping: Dhis2Mapping, dry_run: bool) -> str:
    if not settings.dhis2_url:
        raise NotConfigured("no DHIS2 URL is configured (ANALYTICS_DHIS2_URL)")
    params = {"importStrategy": "CREATE_AND_UPDATE", "dryRun": "true" if dry_run else "false"}
    if mapping.org_unit_scheme == "code":
        params["orgUnitIdScheme"] = "CODE"
    return f"{settings.dhis2_url.rstrip('/')}/api/dataValueSets?{urlencode(params)}"


def _headers(settings: AnalyticsSettings) -> dict[str, str]:
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if settings.dhis2_token:
        headers["Authorization"] = f"ApiToken {settings.dhis2_token}"
    return headers


async def _refuse_private_addresses(url: str) -> None:
    host = urlsplit(url).hostname or ""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ValueError(f"{host} resolves to the non-public address {address}")


async def send(settings: AnalyticsSettings, url: str, payload: dict[str, Any]) -> PushResult:
    auth = None
    if not settings.dhis2_token and settings.dhis2_username:
        auth = httpx.BasicAuth(settings.dhis2_username, settings.dhis2_password)
    try:
        if settings.is_production:
            await _refuse_private_addresses(url)
        async with httpx.AsyncClient(
            timeout=settings.dhis2_timeout_s, follow_redirects=False, auth=auth
        ) as client:
            response = await client.post(
                url, content=json.dumps(payload), headers=_headers(settings)
            )
    except (httpx.HTTPError, OSError, ValueError) as error:
        return PushResult("failed", None, None, f"{type(error).__name__}: {error}"[:1000])
    return _result(response)


def _result(response: httpx.Response) -> PushResult:
    body = response.content[:MAX_ANSWER_BYTES]
    try:
        document = json.loads(body)
        summary = import_summary(document)
    except ValueError as error:
        return PushResult(
            "failed", response.status_code, None, f"DHIS2 answered {response.status_code}: {error}"
        )
    status = summary.status.lower()
    if status not in ("success", "warning", "error"):
        status = "error" if response.is_error else "success"
    return PushResult(
        status, response.status_code, summary, summary.description if status == "error" else None
    )
