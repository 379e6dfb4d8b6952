"""Charts are PNGs drawn from the reports; the dashboard is one HTML page without scripts that
shows the summary's figures and the four charts. A real headless Chromium (Debian's, driven by
Playwright) loads it from a real server with a bearer token: no console error, every chart
drawn, the figures shown equal to the summary report's, and a screenshot taken."""

from __future__ import annotations

import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.async_api import async_playwright

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.clients import serving
from amana_common.testing.databases import committing_database
from amana_common.testing.plugin import MigratedDatabase
from amana_common.testing.service import bearer
from analytics.dashboard import CONTENT_SECURITY_POLICY, FIGURES
from analytics.main import create_analytics_app
from analytics.models import REPORTING_TABLES
from analytics.settings import AnalyticsSettings

from .ingest import ingest_batch
from .kafka_setup import SERVICE_DIR
from .scenario import scenario

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def ingested(database: Database, settings: AnalyticsSettings) -> None:
    await ingest_batch(database, settings, scenario().events)


@pytest.mark.parametrize("chart", ["coverage", "outcomes", "non_payment_reasons", "timeliness"])
async def test_charts_are_pngs(client: httpx.AsyncClient, ingested: None, chart: str) -> None:
    response = await client.get(f"/charts/{chart}.png", params={"programme": "PROG-A"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert (image.format, image.size) == ("PNG", (800, 420))
    assert len(set(image.convert("L").getdata())) > 20  # something is drawn, not a blank


async def test_charts_take_their_reports_filters_only(client: httpx.AsyncClient) -> None:
    empty = await client.get("/charts/outcomes.png", params={"period": "2030"})
    assert empty.status_code == 200  # "no data" is still a picture
    for params in ({"group_by": "location"}, {"format": "csv"}, {"period": "2026-13"}):
        response = await client.get("/charts/outcomes.png", params=params)
        assert response.status_code == 422, params


async def test_dashboard_is_a_page_without_scripts(
    client: httpx.AsyncClient, ingested: None
) -> None:
    response = await client.get("/dashboard", params={"programme": "PROG-A"})
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert (
        "script-src" not in CONTENT_SECURITY_POLICY
        and "default-src 'none'" in CONTENT_SECURITY_POLICY
    )
    html = response.text
    assert "<script" not in html.lower()
    assert html.count('src="data:image/png;base64,') == 4
    assert '<dd id="settled" data-value="3">3</dd>' in html
    assert "programme: PROG-A" in html
    assert (await client.get("/dashboard", params={"group_by": "x"})).status_code == 422


@pytest.fixture
async def served(
    migrated_database: MigratedDatabase, kafka_bootstrap: str
) -> AsyncIterator[tuple[str, AnalyticsSettings]]:
    """The app on a real port, on a database that commits (the browser's requests are not in
    a test's transaction)."""
    url = await migrated_database("analytics", SERVICE_DIR, "browser")
    settings = AnalyticsSettings(
        database_url=url, kafka_bootstrap=kafka_bootstrap, environment="test"
    )
    async with committing_database(url) as database:
        await _empty(database)
        await ingest_batch(database, settings, scenario().events)
        try:
            async with serving(create_analytics_app(settings)) as base_url:
                yield base_url, settings
        finally:
            await _empty(database)


async def _empty(database: Database) -> None:
    from sqlalchemy import text

    async with database.sessionmaker() as session, session.begin():
        await session.execute(text(f"TRUNCATE {', '.join(REPORTING_TABLES)}"))


async def test_dashboard_in_a_real_browser(
    served: tuple[str, AnalyticsSettings], tmp_path: Path
) -> None:
    # Never skipped: CI installs the browser (.ci/run), and a machine without one fails here.
    assert shutil.which(CHROMIUM), f"no {CHROMIUM}: apt-get install chromium (as .ci/run does)"
    base_url, settings = served
    headers = bearer(settings, Role.analyst)
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
        summary: dict[str, Any] = (await http.get("/reports/summary")).json()["rows"][0]
    problems: list[str] = []
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            extra_http_headers=headers,
        )
        try:
            page = await context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            response = await page.goto(f"{base_url}/dashboard")
            assert response is not None and response.status == 200
            await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            shown = {
                name: await page.get_attribute(f"#{name}", "data-value") for name, _, _ in FIGURES
            }
            texts = {name: await page.inner_text(f"#{name}") for name in ("settled", "households")}
            drawn = [
                await page.eval_on_selector(f"#chart-{chart}", "img => img.naturalWidth")
                for chart in ("coverage", "outcomes", "non_payment_reasons", "timeliness")
            ]
        finally:
            await context.close()
    async with httpx.AsyncClient(base_url=base_url) as anonymous:
        assert (await anonymous.get("/dashboard")).status_code == 401
    assert problems == []
    assert drawn == [800, 800, 800, 800]
    assert {name: (float(v) if v else None) for name, v in shown.items()} == {
        name: (float(summary[name]) if summary[name] is not None else None)
        for name, _, _ in FIGURES
    }
    assert texts == {"settled": "3", "households": "4"}
    screenshot = Image.open(tmp_path / "dashboard.png")
    assert screenshot.size[0] >= 800 and screenshot.size[1] > 600
