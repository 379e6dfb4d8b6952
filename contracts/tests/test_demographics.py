from datetime import date

import pytest

from amana_contracts.demographics import age_band, age_on


@pytest.mark.parametrize(
    ("born", "on", "age"),
    [
        (date(2000, 6, 15), date(2026, 6, 14), 25),
        (date(2000, 6, 15), date(2026, 6, 15), 26),
        (date(2004, 2, 29), date(2026, 2, 28), 21),
        (date(2004, 2, 29), date(2026, 3, 1), 22),
        (date(2026, 1, 1), date(2026, 1, 1), 0),
    ],
)
def test_age_in_completed_years(born: date, on: date, age: int) -> None:
    assert age_on(born, on) == age


@pytest.mark.parametrize(
    ("born", "band"),
    [
        (date(2022, 1, 2), "0-4"),
        (date(2022, 1, 1), "5-17"),
        (date(2009, 1, 2), "5-17"),
        (date(2009, 1, 1), "18-34"),
        (date(1992, 1, 1), "35-59"),
        (date(1967, 1, 2), "35-59"),
        (date(1967, 1, 1), "60+"),
    ],
)
def test_age_bands_on_their_boundaries(born: date, band: str) -> None:
    assert age_band(born, date(2027, 1, 1)) == band
