import asyncio
from collections.abc import Sequence

from amana_common.db import Database
from amana_common.settings import ServiceSettings
from amana_common.worker import Component, infrastructure_components, wait_or_stop
from registry import fhir_service
from registry.consumers import provider_projection
from registry.duplicates import DuplicateRunner
from registry.import_readers import Readers
from registry.imports import ApplyContext, ImportSettings, ImportWorker
from registry.reference import RulesSource, cleaning_rules
from registry.settings import RegistrySettings


class BulkJobs:
    """Runs bulk imports and FHIR bulk exports, one job at a time, leased so that several
    workers share the queue and a job whose worker died is resumed by another."""

    def __init__(self, settings: RegistrySettings, database: Database) -> None:
        self.database = database
        self.poll_s = settings.import_poll_s
        rules = cleaning_rules(settings)
        self.imports = ImportWorker(
            database,
            ApplyContext(rules, settings.default_currency, "import"),
            ImportSettings(
                settings.import_chunk_size, settings.import_lease_s, settings.import_poll_s
            ),
            Readers(rules, RulesSource.of(settings), settings.import_processes),
        )

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                busy = await self.imports.run_once()
                busy = await fhir_service.run_exports(self.database, self.imports.owner) or busy
                if not busy:
                    await wait_or_stop(stop, self.poll_s)
        finally:
            self.imports.readers.close()


def worker_components(settings: ServiceSettings, database: Database) -> Sequence[Component]:
    """The registry worker publishes its outbox, prunes, projects provider events and runs
    bulk imports and exports and the batch duplicate detections the API queued."""
    assert isinstance(settings, RegistrySettings)
    return [
        *infrastructure_components(settings, database),
        provider_projection(settings, database),
        BulkJobs(settings, database),
        DuplicateRunner(database),
    ]
