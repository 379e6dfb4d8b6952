"""Request and response bodies of the payroll API, and the JSON Schema of the rule grammar.

Rule trees, formulas and priorities arrive as JSON and are validated by `domain` (which knows
the deployment's attribute types, and names the path of every error); their grammar is
published in the OpenAPI document as the `EligibilityRule`, `BenefitFormula` and
`PriorityKey` schemas below.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from amana_common.validation import (
    CurrencyCode,
    Date,
    MultiLine,
    Name,
    Omittable,
    RequestBody,
    Text,
)
from amana_contracts.demographics import AGE_BANDS
from amana_contracts.payroll import ExclusionReason, FrequencyUnit, ProgrammeStatus
from amana_contracts.provider import Mechanism
from payroll.domain import (
    HOUSEHOLD_STATUSES,
    MAX_AMOUNT_MINOR,
    MAX_LIST_VALUES,
    MAX_PRIORITY_KEYS,
    MAX_TOP_UP_COUNT,
    MAX_TOP_UPS,
    SEXES,
    PayrollStatus,
)
from payroll.models import Trigger

Code = Annotated[str, Text(pattern=r"^[A-Z0-9][A-Z0-9_-]{1,31}$")]
Reason = Annotated[str, Text(min_length=3, max_length=500, multiline=True)]
Budget = Annotated[int, Field(ge=0, le=10**15, description="Per cycle, in minor units")]

# --- the rule grammar, as JSON Schema -------------------------------------------------------

_REF = "#/components/schemas/"
_MEMBER_FILTER = {
    "type": "object",
    "title": "MemberFilter",
    "description": "Members by category on the cycle's period start; every key is optional "
    "and an empty filter matches every member. Ages are completed years; `age_band` is one "
    "band or a list of bands.",
    "additionalProperties": False,
    "properties": {
        "age_band": {
            "oneOf": [
                {"type": "string", "enum": list(AGE_BANDS)},
                {"type": "array", "items": {"type": "string", "enum": list(AGE_BANDS)}},
            ]
        },
        "min_age": {"type": "integer", "minimum": 0, "maximum": 150},
        "max_age": {"type": "integer", "minimum": 0, "maximum": 150},
        "sex": {
            "oneOf": [
                {"type": "string", "enum": list(SEXES)},
                {"type": "array", "items": {"type": "string", "enum": list(SEXES)}},
            ]
        },
        "disability": {"type": "boolean"},
    },
    "example": {"age_band": ["0-4", "5-17"], "disability": True},
}
_SCALAR = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
_COMPARISON = {
    "type": "object",
    "title": "RuleComparison",
    "description": (
        "A comparison of a household field with a value.\n\n"
        "| field | operators | value |\n|---|---|---|\n"
        "| `location` | `=` `!=` `in` `not_in` `within` | a location code (a list for `in`, "
        "`not_in`, and optionally `within`); `within` matches the area and every code below "
        "it (`KE-047` matches `KE-047-0101`, not `KE-0470`) |\n"
        "| `household_size` | `=` `!=` `<` `<=` `>` `>=` `in` `not_in` | an integer |\n"
        f"| `status` | `=` `!=` `in` `not_in` | {', '.join(HOUSEHOLD_STATUSES)} |\n"
        "| `members` | `=` `!=` `<` `<=` `>` `>=` | an integer: the number of members "
        "matching `where` (a MemberFilter; every member without it) |\n"
        "| `attributes.<name>` | by the attribute's configured type: number and integer "
        "`=` `!=` `<` `<=` `>` `>=` `in` `not_in`; string `=` `!=` `in` `not_in`; boolean "
        "`=` `!=`; every type `present` (value true or false) | of the attribute's type |\n\n"
        "A comparison on an attribute the household does not have is false (so `not` of it "
        "is true); `present` tests whether it is set."
    ),
    "additionalProperties": False,
    "required": ["field", "op", "value"],
    "properties": {
        "field": {"type": "string", "examples": ["location", "attributes.pmt_score"]},
        "op": {
            "type": "string",
            "enum": ["=", "!=", "<", "<=", ">", ">=", "in", "not_in", "within", "present"],
        },
        "value": {
            "oneOf": [_SCALAR, {"type": "array", "items": _SCALAR, "maxItems": MAX_LIST_VALUES}]
        },
        "where": {"$ref": _REF + "MemberFilter"},
    },
    "example": {"field": "members", "where": {"age_band": "0-4"}, "op": ">=", "value": 1},
}
_RULE = {
    "title": "EligibilityRule",
    "description": (
        'An eligibility rule tree: `{"all": [rules]}` (every rule holds; an empty list '
        'always holds), `{"any": [rules]}` (at least one), `{"not": rule}`, or a '
        "comparison. At most 200 nodes, 12 levels deep. Evaluated on the cycle's period "
        "start and compiled to SQL with bound parameters; an unknown field, operator or a "
        "value of the wrong type is a 422 naming its path (`eligibility.all.1.value`)."
    ),
    "oneOf": [
        {
            "type": "object",
            "title": "AllOf",
            "additionalProperties": False,
            "required": ["all"],
            "properties": {"all": {"type": "array", "items": {"$ref": _REF + "EligibilityRule"}}},
        },
        {
            "type": "object",
            "title": "AnyOf",
            "additionalProperties": False,
            "required": ["any"],
            "properties": {
                "any": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": _REF + "EligibilityRule"},
                }
            },
        },
        {
            "type": "object",
            "title": "Not",
            "additionalProperties": False,
            "required": ["not"],
            "properties": {"not": {"$ref": _REF + "EligibilityRule"}},
        },
        {"$ref": _REF + "RuleComparison"},
    ],
    "example": {
        "all": [
            {"field": "location", "op": "within", "value": ["KE-047", "KE-001"]},
            {"field": "attributes.pmt_score", "op": "<", "value": 40},
            {
                "any": [
                    {
                        "field": "members",
                        "where": {"age_band": ["0-4", "5-17"]},
                        "op": ">=",
                        "value": 1,
                    },
                    {"field": "members", "where": {"age_band": "60+"}, "op": ">=", "value": 1},
                ]
            },
            {"not": {"field": "status", "op": "=", "value": "suspended"}},
        ]
    },
}
_TOP_UP = {
    "type": "object",
    "title": "TopUp",
    "description": "`amount_minor` for each member matching `where`, for at most `max_count` "
    "of them.",
    "additionalProperties": False,
    "required": ["amount_minor", "max_count"],
    "properties": {
        "where": {"$ref": _REF + "MemberFilter"},
        "amount_minor": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_MINOR},
        "max_count": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_UP_COUNT},
    },
}
_FORMULA = {
    "type": "object",
    "title": "BenefitFormula",
    "description": "amount = min(cap_minor, base_amount_minor + Σ top-up amount_minor x "
    "min(matching members, max_count)), in integer minor units of the programme's currency.",
    "additionalProperties": False,
    "required": ["base_amount_minor"],
    "properties": {
        "base_amount_minor": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_MINOR},
        "top_ups": {
            "type": "array",
            "maxItems": MAX_TOP_UPS,
            "items": {"$ref": _REF + "TopUp"},
        },
        "cap_minor": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_MINOR},
    },
    "example": {
        "base_amount_minor": 300000,
        "top_ups": [
            {"where": {"age_band": ["0-4", "5-17"]}, "amount_minor": 50000, "max_count": 3},
            {"where": {"disability": True}, "amount_minor": 100000, "max_count": 2},
        ],
        "cap_minor": 600000,
    },
}
_PRIORITY_KEY = {
    "type": "object",
    "title": "PriorityKey",
    "description": "When eligible households cost more than the cycle's budget, they keep "
    "their place in this order (then by household number): the first that does not fit and "
    "every one after it are left out as over_budget. Households without the attribute come "
    "last.",
    "additionalProperties": False,
    "required": ["by"],
    "properties": {
        "by": {"type": "string", "examples": ["attributes.pmt_score", "household_size"]},
        "order": {"type": "string", "enum": ["asc", "desc"], "default": "asc"},
    },
    "example": {"by": "attributes.pmt_score", "order": "asc"},
}
RULE_SCHEMAS: dict[str, dict[str, Any]] = {
    "EligibilityRule": _RULE,
    "RuleComparison": _COMPARISON,
    "MemberFilter": _MEMBER_FILTER,
    "BenefitFormula": _FORMULA,
    "TopUp": _TOP_UP,
    "PriorityKey": _PRIORITY_KEY,
}


GRAMMAR_KEY = "x-amana-grammar"


def _grammar(name: str) -> Any:
    """Marks a field as holding one of RULE_SCHEMAS; `link_rule_grammar` makes the OpenAPI
    document refer to it (the model's own schema stays a plain object, which `domain`
    validates)."""
    return Field(json_schema_extra={GRAMMAR_KEY: name})


RuleTree = Annotated[dict[str, Any], _grammar("EligibilityRule")]
FormulaJson = Annotated[dict[str, Any], _grammar("BenefitFormula")]
PriorityJson = Annotated[
    list[dict[str, Any]], Field(max_length=MAX_PRIORITY_KEYS), _grammar("PriorityKey")
]


def link_rule_grammar(node: Any) -> None:
    """Points every marked field of an OpenAPI document at its RULE_SCHEMAS entry."""
    if isinstance(node, list):
        for item in node:
            link_rule_grammar(item)
        return
    if not isinstance(node, dict):
        return
    name = node.pop(GRAMMAR_KEY, None)
    if name is not None:
        reference = {"$ref": _REF + name}
        if node.get("type") == "array":
            node["items"] = reference
        else:
            kept = {k: v for k, v in node.items() if k in ("title", "description")}
            node.clear()
            node.update({"allOf": [reference], **kept})
    for value in node.values():
        link_rule_grammar(value)


class FrequencyIn(RequestBody):
    # The rule below, as JSON Schema: a client (and the contract test) can know it.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"unit": {"const": "every_n_months"}}},
                {"properties": {"every_n_months": {"const": 1}}},
            ]
        }
    )

    unit: FrequencyUnit = Field(description="monthly, every_n_months or quarterly")
    every_n_months: int = Field(default=1, ge=1, le=12, description="every_n_months only")
    payment_day: int = Field(ge=1, le=28, description="Day of the month payments open")
    payment_window_days: int = Field(ge=1, le=90, description="Days a payment may take")

    @model_validator(mode="after")
    def _months_only_for_every_n(self) -> FrequencyIn:
        if self.unit != "every_n_months" and self.every_n_months != 1:
            raise ValueError("every_n_months applies only to the every_n_months unit")
        return self


class RulesIn(RequestBody):
    eligibility: RuleTree = Field(description="Who is eligible: an EligibilityRule tree")
    formula: FormulaJson = Field(description="How much each household receives")
    budget_priority: PriorityJson = Field(
        default_factory=list, description="Who is left out first when the budget is short"
    )


class ProgrammeIn(RulesIn):
    code: Code = Field(description="Unique, upper-case: e.g. CT-OVC-2027")
    name: Name
    description: MultiLine | None = None
    currency: CurrencyCode = Field(description="ISO 4217; an active provider must serve it")
    start_date: Date
    end_date: Date | None = None
    frequency: FrequencyIn
    budget_per_cycle_minor: Budget
    carry_over: bool = Field(
        default=False,
        description="Add retryable failed payments of past cycles to the next payroll, once",
    )
    generation_lead_days: int = Field(
        default=5, ge=0, le=60, description="The scheduler generates this many days early"
    )


class ProgrammePatch(RequestBody):
    """The fields to change. The currency, start date and frequency change only while the
    programme is a draft; rules and formula change through a new version."""

    name: Omittable[Name] = None
    description: MultiLine | None = None
    currency: Omittable[CurrencyCode] = None
    start_date: Omittable[Date] = None
    end_date: Date | None = Field(default=None, description="null: open-ended")
    frequency: Omittable[FrequencyIn] = None
    budget_per_cycle_minor: Omittable[Budget] = None
    carry_over: Omittable[bool] = None
    generation_lead_days: Omittable[Annotated[int, Field(ge=0, le=60)]] = None


class VersionIn(RulesIn):
    note: Reason | None = Field(default=None, description="Why the rules change")


class ReasonIn(RequestBody):
    reason: Reason


class OptionalReasonIn(RequestBody):
    reason: Reason | None = None


class FrequencyOut(BaseModel):
    unit: FrequencyUnit
    every_n_months: int
    payment_day: int
    payment_window_days: int


class ProgrammeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    code: str
    name: str
    description: str | None
    currency: str
    status: ProgrammeStatus
    status_reason: str | None
    start_date: date
    end_date: date | None
    frequency: FrequencyOut
    budget_per_cycle_minor: int
    carry_over: bool
    generation_lead_days: int
    rules_version: int = Field(description="The version new payrolls use")
    version: int
    created_by: str
    updated_by: str
    created_at: datetime
    updated_at: datetime


class RuleVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    programme_id: UUID
    version: int
    eligibility: RuleTree
    formula: FormulaJson
    budget_priority: PriorityJson
    note: str | None
    created_by: str
    created_at: datetime


class SimulationIn(RequestBody):
    """Candidate rules: any part left out is the current version's."""

    eligibility: RuleTree | None = None
    formula: FormulaJson | None = None
    budget_priority: PriorityJson | None = None
    cycle_sequence: int | None = Field(
        default=None,
        ge=1,
        description="The cycle whose date ages are computed on (default: the next cycle to pay)",
    )
    budget_minor: Budget | None = Field(default=None, description="Default: the programme's")
    location_level: int | None = Field(
        default=None, ge=1, le=6, description="Group locations at this level (1: KE, 2: KE-047)"
    )


class Tally(BaseModel):
    eligible: int = Field(description="Households meeting the rules")
    on_payroll: int
    total_amount_minor: int
    exclusions: dict[ExclusionReason, int]


class LocationComparison(BaseModel):
    location_code: str
    eligible: int
    on_payroll: int
    amount_minor: int
    current_on_payroll: int
    current_amount_minor: int


class Difference(BaseModel):
    newly_included: int = Field(description="Paid with the candidate rules, not the current")
    newly_excluded: int = Field(description="Paid with the current rules, not the candidate")
    cost_delta_minor: int


class SimulationOut(BaseModel):
    programme_id: UUID
    current_version: int
    cycle_sequence: int
    cycle_date: date
    budget_minor: int
    candidate: Tally
    current: Tally
    difference: Difference
    by_location: list[LocationComparison]
    locations_truncated: bool


class CycleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    programme_id: UUID
    sequence: int
    period_start: date
    period_end: date
    payment_date: date
    window_end: date = Field(description="Last day of the payment window")
    generate_on: date = Field(description="When the scheduler generates its payroll")
    payroll_id: UUID | None = Field(default=None, description="Its live payroll, if any")
    payroll_status: PayrollStatus | None = None


class TriggerIn(RequestBody):
    cycle_sequence: int = Field(ge=1, le=100_000, description="Which cycle (1: the first)")


class ProgressOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    phase: str
    rows_done: int
    rows_total: int
    attempts: int
    started_at: datetime
    updated_at: datetime


class PayrollOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    programme_id: UUID
    cycle_id: UUID
    rules_version: int
    status: PayrollStatus
    currency: str
    budget_minor: int
    eligible_count: int
    line_count: int
    carried_over_count: int
    total_amount_minor: int
    exclusions: dict[str, int]
    trigger: Trigger
    generated_by: str = Field(description="Who triggered it (system:scheduler when scheduled)")
    changed_by: str | None
    decided_by: str | None
    decided_at: datetime | None
    rejection_reason: str | None
    failure: str | None
    created_at: datetime
    generated_at: datetime | None
    version: int
    progress: ProgressOut | None = None


class LocationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    location_code: str
    eligible: int
    on_payroll: int
    amount_minor: int
    exclusions: dict[str, int]


class SummaryOut(BaseModel):
    payroll_id: UUID
    status: PayrollStatus
    eligible_count: int
    line_count: int
    total_amount_minor: int
    exclusions: dict[str, int]
    by_location: list[LocationOut]


class IdentifierOut(BaseModel):
    scheme: str
    value: str


class AccountOut(BaseModel):
    kind: str
    value: str | None
    bank_code: str | None
    holder_name: str | None


class LineOut(BaseModel):
    id: UUID = Field(description="The line's id (`line_id` in PayrollApproved)")
    household_id: UUID
    household_number: str
    location_code: str
    recipient_member_id: UUID
    recipient_given_name: str
    recipient_family_name: str
    recipient_sex: str
    recipient_age_band: str
    recipient_identifier: IdentifierOut | None
    recipient_phone: str | None
    provider_id: UUID
    mechanism: Mechanism
    pay_point_id: UUID | None
    account: AccountOut | None
    amount_minor: int
    carried_over_payment_id: UUID | None
