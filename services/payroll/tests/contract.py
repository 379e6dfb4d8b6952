"""What payroll's contract test needs beyond the defaults (amana_common.testing.contract)."""

from amana_common.testing.contract import Contract

# Rules that depend on what is stored, which JSON Schema cannot state.
CURRENCY = "currency"  # an active provider serves it: providers come from provider.events only
END_DATE = "end_date"  # on or after the start, leaving at least one payment date

CONTRACT = Contract(
    beyond_schema={
        "POST /programmes": {CURRENCY, END_DATE},
        "PATCH /programmes/{programme_id}": {CURRENCY, END_DATE},
    },
    # The rule grammar's schema (EligibilityRule, BenefitFormula, PriorityKey) states its
    # shape; which fields exist (the deployment's eligibility attributes) and which values
    # and operators each field takes are checked by domain.py, each error coded so.
    beyond_schema_codes={"invalid-rule"},
)
