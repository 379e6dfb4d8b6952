from typing import Any

from fastapi import FastAPI

from amana_common.app import create_app
from amana_common.cli import ServiceEntry
from payroll.api import cycles, payrolls, programmes
from payroll.schemas import RULE_SCHEMAS, link_rule_grammar
from payroll.settings import PayrollSettings
from payroll.worker import worker_components


def create_payroll_app(settings: PayrollSettings | None = None) -> FastAPI:
    app = create_app(
        settings or PayrollSettings(),
        [programmes, cycles, payrolls],
        title="Amana payroll",
        description="Programmes (eligibility rules, benefit formula, frequency, budget), their "
        "cycles, what-if simulation, payrolls generated on schedule, maker-checker approval.",
    )
    _publish_rule_grammar(app)
    return app


def _publish_rule_grammar(app: FastAPI) -> None:
    """Adds the JSON Schemas of the rule grammar to the OpenAPI components the bodies name."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            link_rule_grammar(document)
            document.setdefault("components", {}).setdefault("schemas", {}).update(RULE_SCHEMAS)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


ENTRY = ServiceEntry(
    name="payroll",
    settings=PayrollSettings,
    app=create_payroll_app,
    components=worker_components,
)
