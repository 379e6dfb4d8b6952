"""The mixed workload of `make load-test`, through the gateway of the stack `make run` starts.

Each user acts once a second (`constant_throughput(1)`), so N users make about N requests/s:
registrars enrol households and search and read them, programme staff look up which providers
serve a location and read a provider, and the provider posts signed settlement webhooks
(Standard Webhooks, with the channel secret disbursement issued). `bench/load_test.py` prepares
what they need (tokens, a provider and its webhook secret, households to find) and passes it
in `AMANA_LOAD_FIXTURE` (a JSON file).

One programme manager also simulates a draft programme's payroll every 10 s, with candidate
rules (the current rules and a wider PMT threshold) over payroll's projection.

    uv run locust -f bench/load/locustfile.py   # only through bench/load_test.py, which
                                                # prepares the fixture and judges the run
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from households import household
from locust import HttpUser, constant_throughput, task
from standardwebhooks import Webhook

# The demo's rules with a wider proxy-means-test threshold: the candidate a manager tries.
WIDER_ELIGIBILITY: dict[str, Any] = {
    "any": [
        {"field": "attributes.pmt_score", "op": "<", "value": 40},
        {"field": "members", "where": {"disability": True}, "op": ">=", "value": 1},
    ]
}

FIXTURE: dict[str, Any] = (
    json.loads(Path(os.environ["AMANA_LOAD_FIXTURE"]).read_text())
    if os.environ.get("AMANA_LOAD_FIXTURE")
    else {}
)


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {FIXTURE['tokens'][role]}"}


class Registrar(HttpUser):
    """Enrols, searches and reads households (registrar and auditor tokens)."""

    weight = 6
    wait_time = constant_throughput(1)

    @task(2)
    def enrol(self) -> None:
        self.client.post(
            "/registry/households",
            json=household(),
            headers=bearer("registrar") | {"Idempotency-Key": f"load-{random.getrandbits(64)}"},
            name="enrol household",
        )

    @task(4)
    def search(self) -> None:
        given, family = random.choice(FIXTURE["names"])
        name = random.choice([f"{given} {family}", family, f"{family} {given}"])
        self.client.get(
            "/registry/households/search",
            params={"name": name},
            headers=bearer("auditor"),
            name="search households by name",
        )

    @task(4)
    def read(self) -> None:
        household_id = random.choice(FIXTURE["households"])
        self.client.get(
            f"/registry/households/{household_id}",
            headers=bearer("registrar"),
            name="read a household",
        )

    @task(1)
    def history(self) -> None:
        household_id = random.choice(FIXTURE["households"])
        self.client.get(
            f"/registry/households/{household_id}/history",
            headers=bearer("auditor"),
            name="read a household's history",
        )


class ProgrammeStaff(HttpUser):
    """Which providers serve a location, and a provider's record."""

    weight = 2
    wait_time = constant_throughput(1)

    @task(3)
    def lookup(self) -> None:
        self.client.get(
            "/lookup",
            params={"location_code": "KE-047-0101", "mechanism": "mobile_money"},
            headers=bearer("programme-manager"),
            name="provider lookup",
        )

    @task(1)
    def read_provider(self) -> None:
        self.client.get(
            f"/providers/{FIXTURE['provider_id']}",
            headers=bearer("programme-manager"),
            name="read a provider",
        )


class ProgrammeManager(HttpUser):
    """One manager trying candidate rules: a what-if simulation over the whole projection
    (seconds of database work on a national registry) every 10 s, not once a second."""

    fixed_count = 1
    wait_time = constant_throughput(0.1)

    @task
    def simulate(self) -> None:
        self.client.post(
            f"/programmes/{FIXTURE['programme_id']}/simulate",
            json={"eligibility": WIDER_ELIGIBILITY},
            headers=bearer("programme-manager"),
            name="simulate a payroll",
        )


class Provider(HttpUser):
    """The provider reports payment results by signed webhooks (unknown payment numbers:
    disbursement keeps each as an exception for review and answers 200)."""

    weight = 2
    wait_time = constant_throughput(1)

    @task
    def settle(self) -> None:
        now = datetime.now(UTC)
        results = [
            {
                "payment_number": f"LOAD{random.getrandbits(40):012d}",
                "status": "settled",
                "amount_minor": 250_000,
                "currency": "KES",
                "provider_reference": f"PSP-{random.getrandbits(48):x}",
                "occurred_at": now.isoformat(),
            }
            for _ in range(random.choice([1, 1, 1, 10]))
        ]
        body = json.dumps({"type": "payment.results", "results": results})
        webhook_id = f"msg_{random.getrandbits(96):024x}"
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(FIXTURE["webhook_secret"]).sign(webhook_id, now, body),
            "content-type": "application/json",
        }
        self.client.post(
            f"/webhooks/providers/{FIXTURE['provider_id']}",
            data=body,
            headers=headers,
            name="settlement webhook",
        )
