from fastapi import FastAPI

from amana_common.app import create_app
from amana_common.cli import ServiceEntry
from disbursement.api import (
    batches,
    channels,
    payments,
    reasons,
    reconciliation,
    statements,
    webhooks,
)
from disbursement.settings import DisbursementSettings
from disbursement.worker import worker_components


def create_disbursement_app(settings: DisbursementSettings | None = None) -> FastAPI:
    return create_app(
        settings or DisbursementSettings(),
        [payments, batches, reconciliation, statements, reasons, channels, webhooks],
        title="Amana disbursement",
        description="Payments, batches and dispatch, settlement webhooks, statements, reason "
        "codes and reconciliation.",
    )


ENTRY = ServiceEntry(
    name="disbursement",
    settings=DisbursementSettings,
    app=create_disbursement_app,
    components=worker_components,
)
