"""The whole cycle over a running stack, step by step, and what must hold at its end.

Steps: register a provider (api delivery to the PSP sandbox), give it a webhook secret and an
API credential in disbursement and an account in the sandbox, enrol households from the
registry's generator, define and activate a programme, let payroll's scheduler generate the
payroll, approve it as another user, and wait until disbursement has reconciled it. A fault
test runs the same steps and breaks something in between.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from amana_common.auth import Role, issue_token
from amana_common.settings import ServiceSettings
from amana_contracts.base import EventData
from analytics import consumers as analytics_consumers
from disbursement import consumers as disbursement_consumers
from payroll import consumers as payroll_consumers
from registry import consumers as registry_consumers
from registry.generate import Generator, GeneratorConfig, ProviderOption
from registry.reference import cleaning_rules
from registry.settings import RegistrySettings

from .harness import TOPICS, Stack, until

# Each consumer of the cycle: the database that records it, its group, the topics it reads.
CONSUMERS = {
    "registry-provider-projection": ("registry", ("provider.events",)),
    "payroll-projections": (
        "payroll",
        ("registry.events", "provider.events", "disbursement.events"),
    ),
    "disbursement": ("disbursement", ("payroll.events", "provider.events")),
    "analytics": ("analytics", TOPICS),
}
SERVICE_AREAS = ["KE-001", "KE-008", "KE-023", "KE-032", "KE-042", "KE-047"]


def today() -> date:
    return datetime.now(UTC).date()


@dataclass
class Cycle:
    stack: Stack
    households: int = 300
    sandbox: dict[str, Any] = field(default_factory=dict)
    provider_id: UUID | None = None
    programme_id: UUID | None = None
    payroll_id: UUID | None = None
    enrolled: int = 0

    def headers(self, subject: str, *roles: Role) -> dict[str, str]:
        settings = ServiceSettings(
            environment="test", jwt_secret=self.stack.jwt_secret, database_url="postgresql://x/y"
        )
        return {"Authorization": f"Bearer {issue_token(settings, subject, roles)}"}

    def client(self, service: str, subject: str, *roles: Role) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.stack.url(service), headers=self.headers(subject, *roles), timeout=30
        )

    # --- set-up -----------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Everything before the programme is activated."""
        await self.register_provider()
        await self.open_channels()
        await self.enrol()
        await self.define_programme()
        await self.projected()

    async def register_provider(self) -> None:
        body = {
            "code": "SANDBOX-PSP",
            "legal_name": "Sandbox mobile money",
            "country": "KE",
            "currencies": ["KES"],
            "mechanisms": ["mobile_money"],
            "service_areas": SERVICE_AREAS,
            "contact": {"name": "Desk", "email": "desk@psp.example", "phone": "+254700000009"},
            "fee": {"currency": "KES", "fixed_minor": 1000, "basis_points": 100},
            "delivery": {"mode": "api", "base_url": self.stack.url("psp_sandbox")},
        }
        async with self.client("provider", "finance-1", Role.finance) as http:
            response = await http.post("/providers", json=body)
        assert response.status_code == 201, response.text
        self.provider_id = UUID(response.json()["id"])
        for service, table in (
            ("registry", "projected_providers"),
            ("payroll", "providers"),
            ("disbursement", "providers"),
        ):
            await until(
                lambda s=service, t=table: self.scalar(s, f"select count(*) from {t}"),  # type: ignore[misc]
                f"{service} to know the provider",
                timeout_s=60,
            )

    async def open_channels(self) -> None:
        """disbursement makes the webhook secret and keeps the credential; the sandbox gets
        both, as a real provider would be told them."""
        credential = "sandbox-api-key-" + "0123456789abcdef"
        async with self.client("disbursement", "admin-1", Role.admin) as http:
            created = await http.post(f"/channels/{self.provider_id}/webhook-secrets")
            assert created.status_code == 201, created.text
            put = await http.put(
                f"/channels/{self.provider_id}/api-credential", json={"credential": credential}
            )
            assert put.status_code == 204, put.text
        webhook_path = f"/webhooks/providers/{self.provider_id}"
        account = {
            "api_key": credential,
            "webhook_url": self.stack.url("disbursement") + webhook_path,
            "webhook_secret": created.json()["secret"],
            "settle_delay_s": 1,
            "failure_rate": 0.1,
            "results_per_webhook": 20,
            "seed": 7,
            **self.sandbox,
        }
        async with self.client("psp_sandbox", "admin-1", Role.admin) as http:
            response = await http.put(f"/sandbox/providers/{self.provider_id}", json=account)
        assert response.status_code in (200, 201), response.text

    async def enrol(self) -> None:
        assert self.provider_id is not None
        config = GeneratorConfig(
            households=self.households,
            seed=11,
            duplicate_rate=0,
            phone_rate=1,
            providers=(ProviderOption(self.provider_id, "mobile_money"),),
        )
        locations = cleaning_rules(RegistrySettings(environment="test")).locations
        bodies = [h.body for h in Generator(config, locations).households()]
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def clerk() -> None:
            async with self.client("registry", "registrar-1", Role.registrar) as http:
                while not queue.empty():
                    response = await http.post("/households", json=queue.get_nowait())
                    assert response.status_code == 201, response.text

        await asyncio.gather(*(clerk() for _ in range(6)))
        self.enrolled = len(bodies)

    async def define_programme(self, window_closed: bool = False) -> None:
        """A monthly programme whose first cycle is paid today (or on the 28th, the latest
        payment day), so the scheduler generates it at once; everyone enrolled is eligible.
        With `window_closed`, its only cycle was paid two months ago on a one-day window: the
        scheduler leaves it alone, an operator generates it (`trigger`)."""
        start = today().replace(day=1)
        dates: dict[str, Any] = {
            "start_date": start.isoformat(),
            "frequency": {
                "unit": "monthly",
                "payment_day": min(today().day, 28),
                "payment_window_days": 14,
            },
        }
        if window_closed:
            start = (start - timedelta(days=40)).replace(day=1)
            dates = {
                "start_date": start.isoformat(),
                "end_date": (start + timedelta(days=20)).isoformat(),
                "frequency": {"unit": "monthly", "payment_day": 1, "payment_window_days": 1},
            }
        body = {
            "code": "CT-STACK",
            "name": "Whole-stack cash transfer",
            "currency": "KES",
            **dates,
            "budget_per_cycle_minor": 10**12,
            "generation_lead_days": 3,
            "eligibility": {"all": []},
            "formula": {
                "base_amount_minor": 150_000,
                "top_ups": [
                    {"where": {"age_band": ["0-4", "5-17"]}, "amount_minor": 25_000, "max_count": 3}
                ],
                "cap_minor": 300_000,
            },
            "budget_priority": [{"by": "household_size", "order": "desc"}],
        }
        async with self.client("payroll", "manager-1", Role.programme_manager) as http:
            response = await http.post("/programmes", json=body)
            assert response.status_code == 201, response.text
        self.programme_id = UUID(response.json()["id"])

    async def projected(self) -> None:
        """payroll's projection holds every household (the scheduler must not generate from
        half of them)."""
        await until(
            lambda: self.scalar("payroll", f"select count(*) = {self.enrolled} from households"),
            "payroll's projection to hold every household",
            timeout_s=120,
        )

    # --- the cycle --------------------------------------------------------------------------

    async def activate(self) -> None:
        async with self.client("payroll", "manager-1", Role.programme_manager) as http:
            response = await http.post(f"/programmes/{self.programme_id}/activate", json={})
        assert response.status_code == 200, response.text

    async def trigger(self) -> None:
        """An operator generates the first cycle's payroll."""
        async with self.client("payroll", "manager-1", Role.programme_manager) as http:
            response = await http.post(
                f"/programmes/{self.programme_id}/payrolls", json={"cycle_sequence": 1}
            )
        assert response.status_code == 202, response.text

    async def payroll_status(self) -> str | None:
        row = await self.row(
            "payroll", f"select id, status from payrolls where programme_id = '{self.programme_id}'"
        )
        if row is None:
            return None
        self.payroll_id = row[0]
        return str(row[1])

    async def generated(self, timeout_s: float = 120) -> None:
        await until(
            lambda: self._status_is("PENDING_APPROVAL"), "the payroll to be generated", timeout_s
        )

    async def _status_is(self, status: str) -> bool:
        return await self.payroll_status() == status

    async def approve(self) -> None:
        """By a payroll approver who is neither the scheduler (its maker) nor the manager."""
        async with self.client("payroll", "approver-1", Role.payroll_approver) as http:
            response = await http.post(f"/payrolls/{self.payroll_id}/approve", json={})
        assert response.status_code == 200, response.text

    async def released(self, timeout_s: float = 120) -> None:
        await until(
            lambda: self.scalar(
                "disbursement",
                f"select count(*) from payments where payroll_id = '{self.payroll_id}'",
            ),
            "disbursement to create the payments",
            timeout_s,
        )

    async def reconciled(self, timeout_s: float = 180) -> None:
        await until(
            lambda: self.scalar(
                "disbursement",
                f"select status = 'reconciled' from payrolls where id = '{self.payroll_id}'",
            ),
            "disbursement to reconcile the payroll",
            timeout_s,
            interval_s=0.5,
        )

    async def run(self) -> None:
        """The whole cycle without a fault."""
        await self.prepare()
        await self.activate()
        await self.generated()
        await self.approve()
        await self.reconciled()

    # --- queries ----------------------------------------------------------------------------

    async def rows(self, service: str, query: str) -> list[tuple[Any, ...]]:
        url = self.stack.plain_database_url(service)
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as connection:
            return await (await connection.execute(query)).fetchall()

    async def row(self, service: str, query: str) -> tuple[Any, ...] | None:
        rows = await self.rows(service, query)
        return rows[0] if rows else None

    async def scalar(self, service: str, query: str) -> Any:
        row = await self.row(service, query)
        return row[0] if row else None

    async def events(self) -> dict[str, list[dict[str, Any]]]:
        """Every CloudEvent this stack published, by topic (DLQs included)."""
        starts = {
            TopicPartition(topic, partition): offset
            for topic, partitions in self.stack.offsets.items()
            for partition, offset in partitions.items()
        }
        found: dict[str, list[dict[str, Any]]] = {topic: [] for topic in self.stack.offsets}
        # subscribed without a group, as TopicReader reads (a manual assign() leaves aiokafka's
        # stop() raising CancelledError)
        consumer = AIOKafkaConsumer(
            *found, bootstrap_servers=self.stack.broker.bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            await until(_assigned(consumer, set(starts)), "every partition to be assigned")
            ends = await consumer.end_offsets(list(starts))
            remaining = {tp for tp, start in starts.items() if ends[tp] > start}
            for tp in starts:
                consumer.seek(tp, starts[tp])
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=5000)
                assert batch, f"could not read {sorted(map(str, remaining))} to their ends"
                for tp, records in batch.items():
                    found[tp.topic].extend(_decoded(r.value) for r in records)
                    if records[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        return found


def _assigned(
    consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        await consumer.getmany(timeout_ms=100)
        return bool(partitions <= consumer.assignment())

    return check


def _decoded(value: bytes | None) -> dict[str, Any]:
    try:
        decoded: dict[str, Any] = json.loads(value or b"null") or {}
    except ValueError:
        return {"undecodable": True}
    return decoded


async def check_invariants(cycle: Cycle) -> dict[str, Any]:
    """What must hold after any scenario, faults or none. Answers the reconciliation."""
    assert cycle.payroll_id is not None
    payroll = cycle.payroll_id
    lines = dict(
        await cycle.rows(
            "payroll",
            f"select line_id, amount_minor from payroll_lines where payroll_id = '{payroll}'",
        )
    )
    payments = await cycle.rows(
        "disbursement",
        f"select payroll_line_id, number, amount_minor, status from payments "
        f"where payroll_id = '{payroll}'",
    )
    assert len(lines) == cycle.enrolled, "every household enrolled is on the payroll"
    per_line = Counter(line for line, *_ in payments)
    assert set(per_line) == set(lines), "every approved line has a payment, and no other"
    assert set(per_line.values()) == {1}, "exactly one payment per line"
    assert all(amount == lines[line] for line, _, amount, _ in payments), "amounts as approved"

    # a relay may still be catching up (after a broker outage) when the payroll is reconciled
    await until(lambda: outboxes_drained(cycle), "every outbox to drain (nothing parked)")
    events = await cycle.events()
    outcomes = Counter(
        e["data"]["payment_number"]
        for e in events["disbursement.events"]
        if e.get("type", "").split(".")[2:3] in (["PaymentSettled"], ["PaymentFailed"])
    )
    numbers = {number for _, number, _, _ in payments}
    assert set(outcomes) == numbers, "every payment has exactly one outcome event"
    assert set(outcomes.values()) == {1}, "no payment settled or failed twice"
    assert set(Counter(s for *_, s in payments)) <= {"settled", "failed", "expired"}
    reconciled = [
        e
        for e in events["disbursement.events"]
        if e.get("type", "").split(".")[2:3] == ["PayrollReconciled"]
    ]
    assert len(reconciled) == 1, "PayrollReconciled once"

    async with cycle.client("disbursement", "finance-1", Role.finance) as http:
        response = await http.get(f"/reconciliation/{payroll}")
    assert response.status_code == 200, response.text
    summary: dict[str, Any] = response.json()
    parts = ("settled", "failed", "expired", "reversed", "pending", "sent")
    for measure in ("count", "amount_minor"):
        total = sum(summary[part][measure] for part in parts)
        assert total == summary["payroll_totals"][measure], f"the equality holds in {measure}"
    assert summary["payroll_totals"]["count"] == len(lines)
    assert summary["payroll_totals"]["amount_minor"] == sum(lines.values())
    assert summary["balanced"] and summary["complete"]

    await check_consumed(cycle, events)
    for topic in TOPICS:
        assert events[f"{topic}.dlq"] == [], f"nothing in {topic}.dlq"
    return summary


async def outboxes_drained(cycle: Cycle) -> bool:
    for service in ("registry", "provider", "payroll", "disbursement"):
        if await cycle.scalar(service, "select count(*) from outbox"):
            return False
    return True


async def check_consumed(cycle: Cycle, events: dict[str, list[dict[str, Any]]]) -> None:
    """Each consumer recorded every event of the types it applies from its topics, once
    (processed_events' key is the consumer and the event id). A consumer may still be catching
    up with the last events when the payroll is reconciled: it is given a minute."""
    for consumer, (service, topics) in CONSUMERS.items():
        published = {e["id"]: e["type"] for t in topics for e in events[t] if "id" in e}
        wanted = {i for i, t in published.items() if t in HANDLED[consumer]}
        query = f"select event_id::text from processed_events where consumer = '{consumer}'"

        async def caught_up(s: str = service, q: str = query, w: set[str] = wanted) -> set[str]:
            processed = {row[0] for row in await cycle.rows(s, q)}
            return processed if w <= processed else set()

        processed = await until(caught_up, f"{consumer} to apply every event", timeout_s=60)
        assert processed <= set(published), f"{consumer} applied events never published"


def _types(*handlers: Mapping[type[EventData], object]) -> frozenset[str]:
    return frozenset(model.cloudevent_type() for mapping in handlers for model in mapping)


# The event types each consumer applies, from its own handler tables.
HANDLED = {
    "registry-provider-projection": _types(registry_consumers.HANDLERS),
    "payroll-projections": _types(payroll_consumers.HANDLERS, payroll_consumers.BATCH_HANDLERS),
    "disbursement": _types(disbursement_consumers.handlers(1)),
    "analytics": _types(analytics_consumers.batch_handlers(b"any key")),
}


async def put_faults(cycle: Cycle, *faults: dict[str, Any]) -> None:
    """Puts faults in force at the sandbox for the cycle's provider."""
    async with cycle.client("psp_sandbox", "admin-1", Role.admin) as http:
        response = await http.put(
            f"/sandbox/providers/{cycle.provider_id}/faults", json={"faults": list(faults)}
        )
    assert response.status_code == 200, response.text


async def deliveries(cycle: Cycle) -> Counter[tuple[str, str | None]]:
    """The sandbox's delivery log by (kind, verdict), once every delivery finished."""

    async def finished() -> bool:
        return not await cycle.scalar(
            "psp_sandbox", "select count(*) from deliveries where status = 'pending'"
        )

    await until(finished, "the sandbox to finish its deliveries", timeout_s=60)
    rows = await cycle.rows("psp_sandbox", "select kind, verdict from deliveries")
    return Counter((str(kind), verdict) for kind, verdict in rows)
