"""Every string of every request body, query parameter and header of the sandbox refuses
control characters and lone surrogates with 422 naming the field: the PSP API's batch as much
as the sandbox's own configuration."""

from typing import Any
from uuid import UUID

import httpx

from amana_common.db import Database
from amana_common.testing.bad_input import BodyRequest, coverage_gaps, sweep_failures
from amana_common.testing.databases import row_count
from psp_sandbox.main import create_psp_sandbox_app
from psp_sandbox.models import Batch, Fault
from psp_sandbox.schemas import FaultsIn, PaymentBatchIn, ProviderConfigIn
from psp_sandbox.settings import SandboxSettings

from .support import batch_body, configure, provider_config, psp_headers

FAULTS = [
    {"faults": [{"kind": "outage", "mode": "503", "count": 1}]},
    {"faults": [{"kind": "bad_signature", "variant": "missing", "count": 1}]},
]
QUERY_EXAMPLES = {
    "cursor": "0" * 32,
    "provider_id": "0" * 32,
    "fault_id": "0" * 32,
    "batch_id": "0" * 32,
    "kind": "results",
    "fault": "replay",
    "status": "pending",
    "verdict": "unexpected",
    "webhook_id": "msg_0123",
}


def full_batch(provider_id: UUID) -> dict[str, Any]:
    """A batch whose first payment holds every optional field."""
    body = batch_body(provider_id, 1)
    body["payments"][0] |= {
        "recipient": {
            "name": "Amina Otieno",
            "identifier": {"scheme": "national_id", "value": "12345678"},
            "phone": "+254700000001",
        },
        "account": {
            "kind": "bank_account",
            "value": "0123456789",
            "bank_code": "KCBLKENX",
            "holder_name": "Amina Otieno",
        },
        "pay_point_code": "AG-0001",
    }
    return body


def requests(provider_id: UUID) -> list[BodyRequest]:
    batch = full_batch(provider_id)
    return [
        BodyRequest(
            "POST",
            "/batches",
            PaymentBatchIn,
            [batch],
            headers=psp_headers(provider_id, UUID(batch["batch_id"])),
        ),
        BodyRequest(
            "PUT",
            "/sandbox/providers/{provider_id}",
            ProviderConfigIn,
            [provider_config(provider_id)],
            path={"provider_id": str(provider_id)},
            headers={"If-Match": '"1"'},
        ),
        BodyRequest("PUT", "/sandbox/faults", FaultsIn, FAULTS),
        BodyRequest(
            "PUT",
            "/sandbox/providers/{provider_id}/faults",
            FaultsIn,
            FAULTS,
            path={"provider_id": str(provider_id)},
        ),
    ]


def test_the_sweep_covers_every_body_field_query_parameter_and_header(
    settings: SandboxSettings,
) -> None:
    sweep = requests(UUID(int=1))

    assert coverage_gaps(create_psp_sandbox_app(settings), sweep, QUERY_EXAMPLES) == []


async def test_every_text_input_refuses_bad_characters(
    client: httpx.AsyncClient, settings: SandboxSettings, database: Database
) -> None:
    provider_id = await configure(client)

    failures = await sweep_failures(
        client, create_psp_sandbox_app(settings), requests(provider_id), QUERY_EXAMPLES
    )

    assert failures == []
    assert await row_count(database, Batch) == 0
    assert await row_count(database, Fault) == 0
