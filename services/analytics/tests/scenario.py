"""One cycle of a programme, small enough to compute every figure by hand (the figures are in
the tests that use it, with the reasoning).

Event dates: everything is ingested on 2026-11-02 (T0), so ages are counted on that day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from amana_contracts.registry import HouseholdStatusChangedV1, HouseholdUpdatedV1

from .factories import (
    T0,
    Cycle,
    Event,
    Line,
    Person,
    Scenario,
    duplicate_flagged,
    duplicate_reviewed,
    failed,
    household,
    payroll_approved,
    payroll_generated,
    payroll_rejected,
    programme,
    provider,
    reconciled,
    reversed_,
    settled,
)


def at(day: int, hour: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


CYCLE = Cycle("PROG-A", 11)  # window 2026-11-05 .. 2026-11-14
REJECTED = Cycle("PROG-A", 11, payroll="r")
APPROVED_AT = at(4, 10)
LINES = [
    Line("h1", "KE-047-0101", "MPESA", "mobile_money", "female", "35-59", 300_000),
    Line("h2", "KE-047-0102", "MPESA", "mobile_money", "male", "60+", 300_000),
    Line("h3", "KE-047-0102", "BANK", "bank_transfer", "female", "18-34", 250_000),
    Line("h4", "KE-030-0001", "BANK", "bank_transfer", "male", "35-59", 250_000),
    Line("h6", "KE-030-0001", "MPESA", "mobile_money", "female", "60+", 200_000),
    Line("h7", "KE-047-0101", "MPESA", "mobile_money", "female", "18-34", 200_000),
]
L1, L2, L3, L4, L5, L6 = LINES


def households() -> list[Event]:
    h2 = [Person("male", date(1960, 1, 1), head=True), Person("female", date(1965, 3, 3))]
    h5 = [Person("female", date(1950, 7, 7), head=True)]
    return [
        household(
            "h1",
            "KE-047-0101",
            [
                Person("female", date(1980, 5, 1), head=True),
                Person("male", date(2015, 1, 1)),
                Person("female", date(2022, 6, 1)),
            ],
            enrolled=at(15, 9, month=10),
            number=1,
        ),
        household("h2", "KE-047-0101", h2, enrolled=at(1, 9), number=2),
        household(
            "h3",
            "KE-047-0102",
            [Person("female", date(2000, 2, 2), head=True)],
            enrolled=at(1, 11),
            number=3,
        ),
        household(
            "h4",
            "KE-030-0001",
            [Person("male", date(1990, 12, 12), head=True), Person("female", date(2010, 11, 2))],
            enrolled=at(20, 8, month=10),
            number=4,
        ),
        household("h5", "KE-030-0001", h5, enrolled=at(20, 8, month=10), number=5),
        # h2 moves to KE-047-0102 (version 2), h5 exits (version 2)...
        household(
            "h2",
            "KE-047-0102",
            h2,
            enrolled=at(1, 9),
            version=2,
            at=T0,
            kind=HouseholdUpdatedV1,
            number=2,
        ),
        household(
            "h5",
            "KE-030-0001",
            h5,
            enrolled=at(20, 8, month=10),
            version=2,
            status="exited",
            at=T0,
            kind=HouseholdStatusChangedV1,
            number=5,
        ),
        # ...and a late copy of h2's first version changes nothing.
        household("h2", "KE-047-0101", h2, enrolled=at(1, 9), number=2),
    ]


def payrolls() -> list[Event]:
    approved = payroll_approved(CYCLE, LINES, at=APPROVED_AT, chunk_size=4)
    return [
        programme("PROG-A", budget=2_000_000),
        provider("MPESA"),
        provider("BANK"),
        payroll_generated(
            REJECTED,
            [],
            eligible_by_location={"KE-047-0101": 9},
            exclusions={"over_budget": 4},
            budget=2_000_000,
            at=at(3, 9),
        ),
        payroll_rejected(REJECTED, at(3, 12)),
        payroll_generated(
            CYCLE,
            LINES,
            eligible_by_location={"KE-047-0101": 3, "KE-047-0102": 2, "KE-030-0001": 2},
            exclusions={"under_review": 1},
            budget=2_000_000,
            at=at(4, 8),
        ),
        *approved,
        approved[0],  # a chunk delivered twice is counted once
    ]


def payments() -> list[Event]:
    return [
        settled(CYCLE, L1, at(5, 10), fee=150),  # 24 h after approval
        settled(CYCLE, L1, at(5, 10), fee=150),  # the same outcome again (a re-send)
        failed(CYCLE, L1, at(9, 10), "AB05"),  # a late failure of a settled payment: ignored
        settled(CYCLE, L2, at(6, 10)),  # 48 h
        failed(CYCLE, L3, at(7, 12), "AC01"),
        settled(CYCLE, L4, at(16, 10)),  # 288 h, after the window closed (15 Nov 00:00)
        settled(CYCLE, L5, at(5, 16)),  # 30 h, then reversed: not paid
        reversed_(CYCLE, L5, at(21, 9), "MD07"),
        failed(CYCLE, L6, at(15, 0), "EXPIRED", outcome="expired"),
        reconciled(CYCLE, LINES, at(22)),
    ]


def duplicates() -> list[Event]:
    return [
        duplicate_flagged("f1", "KE-047-0101", at(1)),
        duplicate_reviewed("f1", "KE-047-0101", at(1), at(2, 12)),  # 36 h
        duplicate_flagged("f2", "KE-047-0102", at(1)),
        duplicate_reviewed("f2", "KE-047-0102", at(1), at(4)),  # 72 h
        duplicate_flagged("f3", "KE-030-0001", at(3)),  # open
    ]


def scenario() -> Scenario:
    return Scenario().add(households(), payrolls(), payments(), duplicates())


SUMMARY = {
    "households": 4,  # h1 to h4: h5 exited
    "members": 8,
    "eligible": 7,  # the approved payroll's (the rejected one's 9 count nowhere)
    "on_payroll": 6,
    "settled": 3,  # L1, L2, L4 (L5 was reversed)
    "failed": 1,  # L3
    "expired": 1,  # L6
    "reversed": 1,  # L5
    "success_rate": 0.5,  # 3 of the 6 ended
    "median_hours": 48.0,  # settled 24, 48 and 288 h after approval
    "p90_hours": 240.0,  # 48 + 0.8 x (288 - 48)
    "share_within_window": 0.3333,  # L1 and L2 of the 6, by 15 Nov 00:00
    "open_duplicate_flags": 1,  # f3
    "paid_amount_minor_KES": 850_000,  # 300,000 + 300,000 + 250,000
    "on_payroll_amount_minor_KES": 1_500_000,
}
"""The summary report of the whole scenario, computed by hand."""
