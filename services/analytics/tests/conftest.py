from pathlib import Path

from amana_common.testing.service import service_fixtures
from analytics.main import create_analytics_app
from analytics.settings import AnalyticsSettings

SERVICE_DIR = Path(__file__).resolve().parents[1]

database_url, database, settings, client = service_fixtures(
    "analytics", SERVICE_DIR, AnalyticsSettings, create_analytics_app
)
