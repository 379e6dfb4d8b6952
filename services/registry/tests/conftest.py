import itertools
from pathlib import Path

from amana_common.testing.service import committing_fixtures, service_fixtures
from registry.main import create_registry_app
from registry.settings import RegistrySettings

SERVICE_DIR = Path(__file__).resolve().parents[1]

database_url, database, settings, client = service_fixtures(
    "registry", SERVICE_DIR, RegistrySettings, create_registry_app
)
committed_database, committed_client = committing_fixtures(
    "registry", SERVICE_DIR, RegistrySettings, create_registry_app
)


_national_ids = itertools.count(20_000_001)


def household(**overrides: object) -> dict[str, object]:
    """A valid enrolment body; each call gives the head a national id of its own."""
    body: dict[str, object] = {
        "location_code": "KE-047-0101",
        "phone": "+254700000001",
        "members": [
            {
                "given_name": "Amina",
                "family_name": "Otieno",
                "sex": "female",
                "date_of_birth": "1984-03-02",
                "relationship": "head",
                "identifiers": [{"scheme": "national_id", "value": str(next(_national_ids))}],
            },
            {
                "given_name": "Baraka",
                "family_name": "Otieno",
                "sex": "male",
                "date_of_birth": "2015-07-19",
                "relationship": "child",
                "disability": True,
                "identifiers": [
                    {"scheme": "birth_certificate", "value": f"BC{next(_national_ids)}"}
                ],
            },
        ],
    }
    body.update(overrides)
    return body
