"""What the registry's contract test needs beyond the defaults (amana_common.testing.contract)."""

from amana_common.testing.contract import Contract

CONTRACT = Contract(
    beyond_schema={
        "GET /households": {"attribute"},  # one of the configured eligibility attributes
        # exactly one of number, identifier, phone, name; a number's check digit, a phone's
        # numbering plan
        "GET /households/search": {"query", "number", "phone", "identifier"},
        # _page: a page token this server issued (stored state). Not yet stated in the schema
        # of the FHIR routes (to do there): the Prefer header bulk export requires, the date
        # forms _lastUpdated takes.
        "GET /fhir/$export": {"Prefer"},
        "GET /fhir/Group": {"_lastUpdated", "_page"},
        "GET /fhir/Patient": {"_lastUpdated", "_page"},
    },
    # The cleaning (cleaning.py) names each rule it applies; these depend on what JSON Schema
    # cannot state: the location hierarchy and the eligibility attributes (stored), a phone's
    # numbering plan, identifiers' and accounts' check digits, the clock, the household's
    # other members.
    beyond_schema_codes={
        "unknown-location",
        "invalid-attribute",
        "invalid-phone",
        "invalid-identifier",
        "invalid-iban",
        "invalid-bic",
        "invalid-account",
        "birth-date-in-future",
        "birth-date-too-early",
        "one-head",
        "one-primary-recipient",
        # U+FFFD: text decoded with the wrong encoding; the raw types share the common Text
        "replacement-character",
        # The content of an uploaded file or Bundle: a CSV's columns, a Bundle's resource type.
        "missing-column",
        "unknown-column",
        "wrong-resource-type",
    },
)
