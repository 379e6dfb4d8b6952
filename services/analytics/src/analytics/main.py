from fastapi import FastAPI

from amana_common.app import create_app
from amana_common.cli import ServiceEntry
from analytics.api import router
from analytics.dhis2 import Dhis2Mapping
from analytics.settings import AnalyticsSettings
from analytics.worker import worker_components


def create_analytics_app(settings: AnalyticsSettings | None = None) -> FastAPI:
    settings = settings or AnalyticsSettings()
    app = create_app(
        settings,
        [router],
        title="Amana analytics",
        description="Reach, coverage, timeliness reports, charts, a dashboard and DHIS2 export.",
    )
    document = settings.dhis2_mapping_document()
    app.state.dhis2_mapping = Dhis2Mapping.model_validate(document) if document else None
    return app


ENTRY = ServiceEntry(
    name="analytics",
    settings=AnalyticsSettings,
    app=create_analytics_app,
    components=worker_components,
)
