"""A payroll database at full size for the payroll benchmarks: a projection of N households
(2 to 7 members each, at least one child, typed eligibility attributes, a primary recipient and
a payment preference through one of four providers, a quarter of them by cash at a pay point),
written by PostgreSQL itself in one statement."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

MOBILE = ["01930000-0000-7000-8000-00000000b001", "01930000-0000-7000-8000-00000000b002"]
BANK = "01930000-0000-7000-8000-00000000b003"
CASH = "01930000-0000-7000-8000-00000000b004"
PAY_POINT = "01930000-0000-7000-8000-00000000c001"

PROVIDERS = f"""
INSERT INTO providers (provider_id, code, status, currencies, mechanisms, version, projected_at)
VALUES ('{MOBILE[0]}', 'MM-1', 'active', '{{KES}}', '{{mobile_money}}', 1, now()),
       ('{MOBILE[1]}', 'MM-2', 'active', '{{KES,UGX}}', '{{mobile_money}}', 1, now()),
       ('{BANK}', 'BANK', 'active', '{{KES}}', '{{bank_transfer}}', 1, now()),
       ('{CASH}', 'CASH', 'active', '{{KES}}', '{{cash_pay_point}}', 1, now())
"""
PAY_POINTS = f"""
INSERT INTO provider_pay_points (pay_point_id, provider_id, status)
VALUES ('{PAY_POINT}', '{CASH}', 'active')
"""

HOUSEHOLDS = f"""
INSERT INTO households (
    household_id, household_number, location_code, location_ancestors, status,
    duplicate_review_open, size,
    member_birth_dates, member_keys, eligibility_attributes,
    recipient_member_id, recipient_given_name, recipient_family_name, recipient_sex,
    recipient_date_of_birth, recipient_identifier_scheme, recipient_identifier_value,
    recipient_phone, provider_id, mechanism, pay_point_id, account_kind, account_value,
    account_bank_code, account_holder_name, payable, not_payable_reasons, version, updated_at,
    projected_at)
SELECT uuid7(),
       'H' || lpad(g::text, 10, '0'),
       l.code, ARRAY['KE', l.area, l.code], 'active', false, m.n, m.births, m.keys,
       jsonb_build_object('pmt_score', (g::bigint * 37 % 1000) / 10.0,
                          'housing', (ARRAY['mud', 'brick', 'stone'])[1 + g % 3]),
       gen_random_uuid(), 'Given' || g, 'Family' || g % 5000, m.head_sex, m.head_born,
       'national_id', lpad((g::bigint * 7)::text, 9, '0'), '+2547' || lpad(g::text, 8, '0'),
       p.provider_id::uuid, p.mechanism,
       CASE WHEN p.mechanism = 'cash_pay_point' THEN '{PAY_POINT}'::uuid END,
       CASE p.mechanism WHEN 'mobile_money' THEN 'msisdn' WHEN 'bank_transfer' THEN 'iban' END,
       CASE p.mechanism WHEN 'mobile_money' THEN '+2547' || lpad(g::text, 8, '0')
                        WHEN 'bank_transfer' THEN 'KE' || lpad(g::text, 20, '0') END,
       CASE WHEN p.mechanism = 'bank_transfer' THEN '01100' END,
       CASE WHEN p.mechanism <> 'cash_pay_point' THEN 'Given' || g || ' Family' || g % 5000 END,
       true, '{{}}', 1, now(), now()
FROM generate_series(1, :households) AS g
CROSS JOIN LATERAL (
    SELECT count(*)::int AS n,
           array_agg(born ORDER BY born) AS births,
           array_agg(key ORDER BY key) AS keys,
           min(sex) FILTER (WHERE i = 1) AS head_sex,
           min(born) FILTER (WHERE i = 1) AS head_born
    FROM (
        SELECT i,
               CASE WHEN i = 1 THEN date '1955-01-01' + (g::bigint * 7919 % 16000)::int
                    ELSE date '2008-01-02' + ((g + i)::bigint * 104729 % 6200)::int END AS born,
               (ARRAY['female', 'male'])[1 + (g + i) % 2] AS sex,
               (g + i) % 23 = 0 AS disabled
        FROM generate_series(1, 2 + g % 6) AS i
    ) AS member
    CROSS JOIN LATERAL (
        -- domain.member_key: (sex index * 2 + disability) * 2^18 + days since 1800-01-01
        SELECT ((g + i) % 2 * 2 + disabled::int) * 262144 + (born - date '1800-01-01') AS key
    ) AS k
) AS m
CROSS JOIN LATERAL (
    SELECT (ARRAY['{MOBILE[0]}', '{MOBILE[1]}', '{BANK}', '{CASH}'])[1 + g % 4] AS provider_id,
           (ARRAY['mobile_money', 'mobile_money', 'bank_transfer', 'cash_pay_point'])[1 + g % 4]
               AS mechanism
) AS p
CROSS JOIN LATERAL (
    SELECT 'KE-' || lpad((1 + g % 47)::text, 3, '0') AS area,
           'KE-' || lpad((1 + g % 47)::text, 3, '0') || '-' || lpad((g / 47 % 100)::text, 4, '0')
               AS code
) AS l
"""


async def fill(session: AsyncSession, households: int) -> None:
    await session.execute(text(PROVIDERS))
    await session.execute(text(PAY_POINTS))
    await session.execute(text(HOUSEHOLDS), {"households": households})
    await session.execute(text("ANALYZE households"))


# Every household meets these rules (each has a child, every score is under 100), so that the
# payroll has one line per household; the rules still evaluate every comparison.
ELIGIBILITY = {
    "all": [
        {"field": "location", "op": "within", "value": "KE"},
        {"field": "status", "op": "in", "value": ["active", "under_review"]},
        {"field": "attributes.pmt_score", "op": "<", "value": 100},
        {
            "any": [
                {
                    "field": "members",
                    "where": {"age_band": ["0-4", "5-17"]},
                    "op": ">=",
                    "value": 1,
                },
                {"field": "members", "where": {"min_age": 60}, "op": ">=", "value": 1},
            ]
        },
        {"not": {"field": "attributes.housing", "op": "=", "value": "palace"}},
    ]
}
FORMULA = {
    "base_amount_minor": 300_000,
    "top_ups": [
        {"where": {"age_band": ["0-4", "5-17"]}, "amount_minor": 50_000, "max_count": 3},
        {"where": {"disability": True}, "amount_minor": 100_000, "max_count": 2},
        {"where": {"min_age": 60, "sex": "female"}, "amount_minor": 75_000, "max_count": 1},
    ],
    "cap_minor": 700_000,
}
PRIORITY = [{"by": "attributes.pmt_score", "order": "asc"}]
# A what-if: a lower score threshold, bigger top-ups for young children, a tighter budget.
CANDIDATE_ELIGIBILITY = {
    "all": [
        {"field": "location", "op": "within", "value": [f"KE-{n:03d}" for n in range(1, 25)]},
        {"field": "attributes.pmt_score", "op": "<", "value": 60},
    ]
}
CANDIDATE_FORMULA = {
    "base_amount_minor": 250_000,
    "top_ups": [{"where": {"age_band": "0-4"}, "amount_minor": 120_000, "max_count": 2}],
}
ATTRIBUTES = {"pmt_score": "number", "housing": "string"}
