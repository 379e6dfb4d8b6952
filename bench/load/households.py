"""Households to enrol, for the load test's users and its preparation alike (no locust here:
importing locust patches the process for gevent)."""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta
from typing import Any

# Nine digits: the generator (demo, e2e, benchmarks) draws eight, so they never collide.
NATIONAL_IDS = itertools.count(random.SystemRandom().randrange(100_000_000, 900_000_000, 100_000))
GIVEN = [
    "Amina", "Wanjiku", "Achieng", "Juma", "Otieno", "Njeri", "Kamau", "Mwangi", "Akinyi",
    "Chebet", "Wambui", "Nafula", "Auma", "Kerubo", "Moraa", "Halima", "Zawadi", "Baraka",
    "Kipchoge", "Ochieng", "Mutua", "Wafula", "Kiprotich", "Hassan", "Njoki", "Atieno",
]  # fmt: skip
FAMILY = [
    "Otieno", "Kamau", "Mwangi", "Odhiambo", "Wekesa", "Kiprop", "Njoroge", "Omondi",
    "Mutiso", "Wanyama", "Kiptoo", "Onyango", "Macharia", "Barasa", "Chege", "Koech",
    "Nyaga", "Ruto", "Ndungu", "Owino", "Simiyu", "Kibet", "Muriuki", "Awuor",
]  # fmt: skip
# Birth dates and names vary as a desk's day of enrolments does: households alike in all but a
# name's spelling are near-duplicates, which the duplicate check holds for review.
BORN = [date(1950, 1, 1) + timedelta(days=day) for day in range(0, 20_000, 7)]


def household() -> dict[str, Any]:
    family = random.choice(FAMILY)
    return {
        "location_code": "KE-047-0101",
        "members": [
            {
                "given_name": random.choice(GIVEN),
                "family_name": family,
                "sex": "female",
                "date_of_birth": random.choice(BORN).isoformat(),
                "relationship": "head",
                "identifiers": [{"scheme": "national_id", "value": str(next(NATIONAL_IDS))}],
            },
            {
                "given_name": random.choice(GIVEN),
                "family_name": family,
                "sex": "male",
                "date_of_birth": (
                    date(2010, 1, 1) + timedelta(days=random.randrange(2500))
                ).isoformat(),
                "relationship": "child",
            },
        ],
    }
