"""Households to enrol, for the load test's users and its preparation alike (no locust here:
importing locust patches the process for gevent)."""

from __future__ import annotations

import itertools
import random
from typing import Any

NATIONAL_IDS = itertools.count(random.SystemRandom().randrange(10_000_000, 80_000_000, 100_000))
GIVEN = ["Amina", "Wanjiku", "Achieng", "Juma", "Otieno", "Njeri", "Kamau", "Mwangi", "Akinyi"]
FAMILY = ["Otieno", "Kamau", "Mwangi", "Odhiambo", "Wekesa", "Kiprop", "Njoroge", "Omondi"]


def household() -> dict[str, Any]:
    family = random.choice(FAMILY)
    return {
        "location_code": "KE-047-0101",
        "members": [
            {
                "given_name": random.choice(GIVEN),
                "family_name": family,
                "sex": "female",
                "date_of_birth": "1984-03-02",
                "relationship": "head",
                "identifiers": [{"scheme": "national_id", "value": str(next(NATIONAL_IDS))}],
            },
            {
                "given_name": random.choice(GIVEN),
                "family_name": family,
                "sex": "male",
                "date_of_birth": "2012-02-14",
                "relationship": "child",
            },
        ],
    }
