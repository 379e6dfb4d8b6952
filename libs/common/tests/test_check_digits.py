"""Luhn check digits: known vectors, and every single-digit error and adjacent transposition
(except 09/90, which Luhn cannot see) of a generated number is detected."""

import pytest

from amana_common.check_digits import is_luhn_valid, luhn_digit, numbered

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
