from fastapi import FastAPI

from amana_common.app import create_app
from amana_common.cli import ServiceEntry
from registry.api import router
from registry.duplicates_api import router as duplicates_router
from registry.fhir_api import router as fhir_router
from registry.imports_api import router as imports_router
from registry.reference import cleaning_rules
from registry.settings import RegistrySettings
from registry.worker import worker_components


def create_registry_app(settings: RegistrySettings | None = None) -> FastAPI:
    settings = settings or RegistrySettings()
    app = create_app(
        settings,
        [router, imports_router, fhir_router, duplicates_router],
        title="Amana registry",
        description="Beneficiary households, their members, identifiers and payment preferences.",
        streamed_paths=("/imports",),
    )
    # Loaded now, so that a broken location file or attribute schema stops the start.
    app.state.cleaning_rules = cleaning_rules(settings)
    return app


ENTRY = ServiceEntry(
    name="registry",
    settings=RegistrySettings,
    app=create_registry_app,
    components=worker_components,
)
