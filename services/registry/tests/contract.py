"""What the registry's contract test needs beyond the defaults (amana_common.testing.contract)."""

import httpx

from amana_common.testing.contract import Contract


def _family(given_name: str, national_id: str) -> dict[str, object]:
    member = {"family_name": "Kamau", "sex": "female", "relationship": "head"}
    return {
        "location_code": "KE-047-0101",
        "members": [
            member
            | {
                "given_name": given_name,
                "date_of_birth": "1979-04-11",
                "identifiers": [{"scheme": "national_id", "value": national_id}],
            },
            member
            | {"given_name": "Njeri", "date_of_birth": "2009-10-02", "relationship": "child"},
        ],
    }


def a_family_enrolled_twice(client: httpx.Client) -> None:
    """Generated households are never near-duplicates of one another: a family enrolled twice
    gives the stateful phase an open duplicate flag to read and decide (found by listing)."""
    for given_name, national_id in (("Wanjiru", "30010001"), ("Wanjiku", "30010002")):
        client.post("/households", json=_family(given_name, national_id)).raise_for_status()
    flags = client.get("/duplicates").json()["items"]
    assert len(flags) == 1, flags


CONTRACT = Contract(
    prepare=a_family_enrolled_twice,
    beyond_schema={
        "GET /households": {"attribute"},  # one of the configured eligibility attributes
        # exactly one of number, identifier, phone, name; a number's check digit, a phone's
        # numbering plan
        "GET /households/search": {"query", "number", "phone", "identifier"},
        # each flag named at most once (a property of the items' flag_id, not of whole items)
        "POST /duplicates/decisions": {"decisions"},
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
