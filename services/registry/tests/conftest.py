import itertools
from datetime import date
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
_households = itertools.count()


def _born(first_year: int, index: int) -> str:
    """Dates of birth that no two calls share, nor come near (README, "Duplicate detection"):
    a year, a month and a day apart each, so that households enrolled by `household()` are
    not duplicates of each other."""
    return date(first_year + index, 1 + index % 12, 1 + index % 28).isoformat()


def household(**overrides: object) -> dict[str, object]:
    """A valid enrolment body; each call gives the head a national id of its own, and the
    members dates of birth of their own (two calls are two households, not duplicates)."""
    index = next(_households)
    body: dict[str, object] = {
        "location_code": "KE-047-0101",
        "phone": "+254700000001",
        "members": [
            {
                "given_name": "Amina",
                "family_name": "Otieno",
                "sex": "female",
                "date_of_birth": _born(1950, index % 40),
                "relationship": "head",
                "identifiers": [{"scheme": "national_id", "value": str(next(_national_ids))}],
            },
            {
                "given_name": "Baraka",
                "family_name": "Otieno",
                "sex": "male",
                "date_of_birth": _born(1995, (index * 7) % 30),
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
