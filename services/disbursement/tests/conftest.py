from pathlib import Path

from amana_common.testing.service import service_fixtures
from disbursement.main import create_disbursement_app
from disbursement.settings import DisbursementSettings

SERVICE_DIR = Path(__file__).resolve().parents[1]

database_url, database, settings, client = service_fixtures(
    "disbursement", SERVICE_DIR, DisbursementSettings, create_disbursement_app
)
