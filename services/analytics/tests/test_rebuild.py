"""On the real broker: the worker ingests the scenario from the topics; `rebuild` empties the
reporting tables and replays the topics from the beginning, and every report comes out the
same (and as computed by hand); a rebuild is refused while the worker runs."""

from __future__ import annotations

from typing import Any

import pytest

from amana_common.auth import Role
from amana_common.db import Database
from amana_common.testing.clients import service_client
from amana_common.testing.service import bearer
from analytics import rebuild
from analytics.main import create_analytics_app
from analytics.settings import AnalyticsSettings

from .kafka_setup import worker_caught_up
from .scenario import scenario

REPORTS = (
    "enrolment",
    "households",
    "members",
    "coverage",
    "payroll",
    "outcomes",
    "non_payment_reasons",
    "timeliness",
    "duplicates",
    "summary",
)


async def snapshot(settings: AnalyticsSettings, database: Database) -> dict[str, Any]:
    async with service_client(create_analytics_app(settings), database) as http:
        http.headers.update(bearer(settings, Role.analyst))
        found = {}
        for name in REPORTS:
            response = await http.get(
                f"/reports/{name}",
                params={"level": "3"} if name not in ("payroll", "summary", "enrolment") else {},
            )
            assert response.status_code == 200, response.text
            found[name] = response.json()["rows"]
        return found


async def test_rebuild_gives_the_same_reports(
    worker: tuple[AnalyticsSettings, Database], kafka_bootstrap: str
) -> None:
    settings, database = worker
    async with worker_caught_up(settings, database, kafka_bootstrap, scenario().events):
        with pytest.raises(rebuild.RebuildRefused):
            await rebuild.rebuild(settings, database, timeout_s=60)
    before = await snapshot(settings, database)
    result = await rebuild.rebuild(settings, database, timeout_s=300)
    assert result.events >= len(scenario().events)
    after = await snapshot(settings, database)
    assert after == before
    async with service_client(create_analytics_app(settings), database) as http:
        http.headers.update(bearer(settings, Role.analyst))
        [figures] = (await http.get("/reports/summary", params={"programme": "PROG-A"})).json()[
            "rows"
        ]
    assert (figures["settled"], figures["failed"], figures["expired"], figures["reversed"]) == (
        3,
        1,
        1,
        1,
    )
    assert (figures["median_hours"], figures["p90_hours"]) == (48.0, 240.0)
