"""Check digits for human-readable numbers (household numbers, payment numbers).

Luhn (mod 10) catches every single-digit error and almost every transposition of adjacent
digits, which are the mistakes people make when they read a number out or type it in.
"""

from __future__ import annotations


def _is_ascii_digits(text: str) -> bool:
    # str.isdigit() also accepts "²" (int() refuses it) and non-ASCII digits such as "٣".
    return text.isascii() and text.isdigit()


def luhn_digit(digits: str) -> int:
    """The digit to append to `digits` so that the whole passes the Luhn check."""
    if not _is_ascii_digits(digits):
        raise ValueError("luhn_digit takes decimal digits only")
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return (10 - total % 10) % 10


def is_luhn_valid(digits: str) -> bool:
    return (
        _is_ascii_digits(digits) and len(digits) >= 2 and luhn_digit(digits[:-1]) == int(digits[-1])
    )


def numbered(prefix: str, sequence: int, width: int) -> str:
    """`prefix`, zero-padded `sequence`, Luhn digit: numbered("H", 42, 9) == "H0000000422"."""
    body = f"{sequence:0{width}d}"
    return f"{prefix}{body}{luhn_digit(body)}"
