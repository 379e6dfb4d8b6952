"""Check digits from python-stdnum. Luhn: known vectors, every single-digit error and adjacent
transposition (except 09/90, which Luhn cannot see) of a generated number is detected, and
the numbers the previous, hand-written implementation issued still verify. ISO 7064 Mod 97-10:
known vectors (IBAN, LEI), every single error and every adjacent transposition detected."""

import pytest

from amana_common.check_digits import (
    is_luhn_valid,
    is_mod97_10_valid,
    luhn_digit,
    mod97_10_digits,
    numbered,
    numbered_mod97_10,
)

SEQUENCES = [0, 1, 42, 999_999_999, *range(3, 10**9, 7_654_321)]


@pytest.mark.parametrize(
    ("payload", "digit"),
    [
        ("7992739871", 3),
        ("411111111111111", 1),  # the 4111... test card
        ("123456781234567", 0),
        ("0", 0),
        ("1", 8),
        ("000000042", 2),
    ],
)
def test_luhn_digit_known_vectors(payload: str, digit: int) -> None:
    assert luhn_digit(payload) == digit
    assert is_luhn_valid(payload + str(digit))
    assert not is_luhn_valid(payload + str((digit + 1) % 10))


def test_numbered_pads_and_appends_the_check_digit() -> None:
    assert numbered("H", 42, 9) == "H0000000422"
    assert numbered("P", 7992739871, 10) == "P79927398713"


def test_every_single_digit_substitution_is_detected() -> None:
    for sequence in SEQUENCES:
        digits = numbered("P", sequence, 10)[1:]
        assert is_luhn_valid(digits)
        for position, original in enumerate(digits):
            for replacement in "0123456789".replace(original, ""):
                wrong = digits[:position] + replacement + digits[position + 1 :]
                assert not is_luhn_valid(wrong), (digits, wrong)


def test_every_adjacent_transposition_except_09_is_detected() -> None:
    transpositions = 0
    for sequence in SEQUENCES:
        digits = numbered("P", sequence, 10)[1:]
        for position in range(len(digits) - 1):
            pair = digits[position : position + 2]
            if pair[0] == pair[1] or pair in ("09", "90"):
                continue
            swapped = digits[:position] + pair[::-1] + digits[position + 2 :]
            assert not is_luhn_valid(swapped), (digits, swapped)
            transpositions += 1
    assert transpositions > 1000


@pytest.mark.parametrize(
    "text",
    ["", "7", "7992739871a", "7992739871 3", "-79927398713", "٧٩٩٢٧٣٩٨٧١٣", "7992739871²"],
)
def test_is_luhn_valid_answers_false_for_anything_but_ascii_digits(text: str) -> None:
    assert is_luhn_valid(text) is False


@pytest.mark.parametrize("payload", ["", "12a", "٧٩٩", "1²"])
def test_luhn_digit_refuses_non_digits(payload: str) -> None:
    with pytest.raises(ValueError, match="decimal digits"):
        luhn_digit(payload)


def previous_luhn_digit(digits: str) -> int:
    """The hand-written Luhn that issued the household numbers already stored."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return (10 - total % 10) % 10


def test_household_numbers_already_issued_still_verify() -> None:
    for sequence in [*SEQUENCES, *range(0, 20_000, 7)]:
        body = f"{sequence:09d}"
        issued = f"H{body}{previous_luhn_digit(body)}"
        assert numbered("H", sequence, 9) == issued
        assert is_luhn_valid(issued[1:])


# --------------------------------------------------------------------------- ISO 7064 Mod 97-10


@pytest.mark.parametrize(
    ("payload", "digits"),
    [
        ("99991234567890121414", "90"),  # ISO 7064's own example
        ("4354111611551114", "31"),
        ("22181321402534321446701611", "35"),
        ("969500KSV493XWY0PS", "33"),  # an LEI (ISO 17442)
        ("1", "95"),  # 100 mod 97 = 3, 98 - 3 = 95
        ("00000000", "98"),
    ],
)
def test_mod97_10_known_vectors(payload: str, digits: str) -> None:
    assert mod97_10_digits(payload) == digits
    assert is_mod97_10_valid(payload + digits)
    wrong = f"{(int(digits) + 1) % 100:02d}"
    assert not is_mod97_10_valid(payload + wrong)


def test_numbered_mod97_10_covers_the_prefix() -> None:
    number = numbered_mod97_10("P", 42, 9)
    assert number == "P000000042" + mod97_10_digits("P000000042")
    assert is_mod97_10_valid(number)
    assert not is_mod97_10_valid("Q" + number[1:])


def test_mod97_10_detects_every_single_error_and_adjacent_transposition() -> None:
    """A digit mistyped as another digit, a prefix letter as another letter, two neighbours
    swapped: all caught."""
    transpositions = 0
    for sequence in SEQUENCES:
        number = numbered_mod97_10("PAY", sequence, 10)
        assert is_mod97_10_valid(number)
        for position, original in enumerate(number):
            alphabet = "0123456789" if original.isdigit() else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            for replacement in alphabet.replace(original, ""):
                wrong = number[:position] + replacement + number[position + 1 :]
                assert not is_mod97_10_valid(wrong), (number, wrong)
        for position in range(len(number) - 1):
            pair = number[position : position + 2]
            if pair[0] != pair[1]:
                swapped = number[:position] + pair[::-1] + number[position + 2 :]
                assert not is_mod97_10_valid(swapped), (number, swapped)
                transpositions += 1
    assert transpositions > 500


@pytest.mark.parametrize(
    "text",
    [
        "",
        "98",
        "0000000000",
        "0000000001",
        "p00000004241",
        "P0000000424\u0661",
        "P00000004241 ",
        "²²²",
    ],
)
def test_is_mod97_10_valid_refuses_aliases_and_foreign_characters(text: str) -> None:
    """00 and 01 leave the same remainder as 97 and 98 but are never the check digits."""
    assert is_mod97_10_valid(text) is False


@pytest.mark.parametrize("payload", ["", "abc", "12-3", "٣٣", "1²"])
def test_mod97_10_digits_refuses_anything_but_digits_and_capitals(payload: str) -> None:
    with pytest.raises(ValueError, match="digits and capital letters"):
        mod97_10_digits(payload)
