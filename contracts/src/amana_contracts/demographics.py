"""Age bands every service reports by: the recipient's age on a given date, never the date of
birth itself (analytics must not hold dates of birth)."""

from __future__ import annotations

from datetime import date
from typing import Literal

AgeBand = Literal["0-4", "5-17", "18-34", "35-59", "60+"]
AGE_BANDS: tuple[AgeBand, ...] = ("0-4", "5-17", "18-34", "35-59", "60+")
_LOWER_BOUNDS: tuple[tuple[int, AgeBand], ...] = (
    (60, "60+"),
    (35, "35-59"),
    (18, "18-34"),
    (5, "5-17"),
)


def age_on(date_of_birth: date, on: date) -> int:
    """Completed years on `on` (someone born on 29 February turns a year older on 1 March)."""
    before_birthday = (on.month, on.day) < (date_of_birth.month, date_of_birth.day)
    return on.year - date_of_birth.year - int(before_birthday)


def age_band(date_of_birth: date, on: date) -> AgeBand:
    age = age_on(date_of_birth, on)
    for lower, band in _LOWER_BOUNDS:
        if age >= lower:
            return band
    return "0-4"
