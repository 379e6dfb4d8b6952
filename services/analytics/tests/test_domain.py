"""The pure rules, on cases computed by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import UUID

import pytest

from analytics.domain import (
    Deltas,
    InvalidPeriod,
    InvalidQuery,
    check_level,
    household_contributions,
    household_row,
    parse_period,
    payment_row,
    percentile,
    pseudonym,
    ratio,
    supersedes,
    winners,
)

from .factories import Cycle, Line, Person, failed, household, reversed_, settled

SECRET = b"k" * 32
ID = UUID("01930000-0000-7000-8000-000000000001")


def test_pseudonyms_are_stable_keyed_and_per_kind() -> None:
    key = pseudonym(SECRET, "household", ID)
    assert key == pseudonym(SECRET, "household", ID) and len(key) == 16
    assert key != pseudonym(SECRET, "payment", ID)
    assert key != pseudonym(b"x" * 32, "household", ID)
    assert ID.bytes not in key and ID.hex.encode() not in key


def test_levels_default_below_the_location_and_never_above_it() -> None:
    assert check_level(None, None) == 2
    assert check_level("KE-047", None) == 3
    assert check_level("KE-047", 2) == 2
    with pytest.raises(InvalidQuery, match="above location KE-047"):
        check_level("KE-047", 1)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026", date(2026, 1, 1), date(2027, 1, 1)),
        ("2026Q4", date(2026, 10, 1), date(2027, 1, 1)),
        ("2026S1", date(2026, 1, 1), date(2026, 7, 1)),
        ("202611B", date(2026, 11, 1), date(2027, 1, 1)),
        ("202602", date(2026, 2, 1), date(2026, 3, 1)),
        ("2026-12", date(2026, 12, 1), date(2027, 1, 1)),
        ("2026W1", date(2025, 12, 29), date(2026, 1, 5)),
        ("2026-W53", date(2026, 12, 28), date(2027, 1, 4)),
        ("20240229", date(2024, 2, 29), date(2024, 3, 1)),
        ("2026-11-01..2026-11-30", date(2026, 11, 1), date(2026, 12, 1)),
    ],
)
def test_periods(text: str, start: date, end: date) -> None:
    period = parse_period(text)
    assert (period.start, period.end, period.label) == (start, end, text)


@pytest.mark.parametrize(
    "text", ["2026Q0", "2026S3", "202612B", "202613", "2025W53", "20230229", "26", "2026-1", ""]
)
def test_invalid_periods(text: str) -> None:
    with pytest.raises(InvalidPeriod):
        parse_period(text)


def test_a_household_keeps_bands_not_dates_of_birth() -> None:
    """On 2026-03-01: born 2008-03-01 is 18 that day (18-34), born 2008-03-02 is 17 (5-17),
    born 1966-02-28 is 60 (60+), born 2021-03-02 is 4 (0-4)."""
    snapshot, _ = household(
        "x",
        "KE-047-0101",
        [
            Person("female", date(1966, 2, 28), head=True),
            Person("male", date(2008, 3, 1)),
            Person("female", date(2008, 3, 2)),
            Person("other", date(2021, 3, 2)),
        ],
        enrolled=datetime(2026, 2, 27, 23, 30, tzinfo=UTC),
    )
    row = household_row(snapshot, date(2026, 3, 1), SECRET)  # type: ignore[arg-type]
    assert (row.head_sex, row.head_age_band, row.enrolled_on) == (
        "female",
        "60+",
        date(2026, 2, 27),
    )
    assert row.composition == {"female|5-17": 1, "female|60+": 1, "male|18-34": 1, "other|0-4": 1}
    households, members = household_contributions(row, -1)
    assert households == {("KE-047-0101", date(2026, 2, 27), "active", "female", "60+"): (-1, -4)}
    assert sum(members.values()) == -4


def test_the_outcome_of_higher_rank_wins() -> None:
    cycle, line = Cycle("P", 11), Line("h", "KE-1")
    at = datetime(2026, 11, 6, tzinfo=UTC)
    paid = payment_row(settled(cycle, line, at)[0], SECRET)  # type: ignore[arg-type]
    lost = payment_row(failed(cycle, line, at)[0], SECRET)  # type: ignore[arg-type]
    back = payment_row(reversed_(cycle, line, at)[0], SECRET)  # type: ignore[arg-type]
    assert supersedes(paid, None) and supersedes(back, paid)
    assert not supersedes(lost, paid) and not supersedes(paid, back)
    assert winners([paid, back, lost], key=lambda r: r.payment_key, beats=supersedes) == [back]


def test_deltas_add_up_and_drop_zeros_in_key_order() -> None:
    deltas = Deltas(2)
    deltas.add({("b",): (1, 10), ("a",): (1, 5)})
    deltas.add({("b",): (-1, -10), ("a",): (2, 1)})
    assert deltas.rows() == [(("a",), [3, 6])]


def test_percentiles_and_ratios() -> None:
    assert percentile([24, 48, 288], 0.5) == 48
    assert percentile([24, 48, 288], 0.9) == pytest.approx(240)
    assert percentile([], 0.5) is None
    assert ratio(1, 3) == 0.3333 and ratio(1, 0) is None and ratio(None, 2) is None
