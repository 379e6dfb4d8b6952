"""Check digits for human-readable numbers (household numbers, payment numbers), computed by
python-stdnum.

Luhn (mod 10, one digit) catches every single-digit error and almost every transposition of
adjacent digits (not 09/90): household numbers use it. ISO 7064 Mod 97-10 (two digits, as in
IBANs and LEIs) catches every single-digit error and every adjacent transposition: meant for
payment numbers (a fixed letter prefix, then digits).
"""

from __future__ import annotations

import re

from stdnum import luhn
from stdnum.iso7064 import mod_97_10

# ASCII only: str.isdigit() also accepts "²" and "٣", and int(x, 36) reads Arabic-Indic digits.
_DIGITS = re.compile(r"[0-9]+")
_ALPHANUMERIC = re.compile(r"[0-9A-Z]+")


def luhn_digit(digits: str) -> int:
    """The digit to append to `digits` so that the whole passes the Luhn check."""
    if not _DIGITS.fullmatch(digits):
        raise ValueError("luhn_digit takes decimal digits only")
    return int(luhn.calc_check_digit(digits))


def is_luhn_valid(digits: str) -> bool:
    return len(digits) >= 2 and bool(_DIGITS.fullmatch(digits)) and luhn.is_valid(digits)


def numbered(prefix: str, sequence: int, width: int) -> str:
    """`prefix`, zero-padded `sequence`, Luhn digit: numbered("H", 42, 9) == "H0000000422"."""
    body = f"{sequence:0{width}d}"
    return f"{prefix}{body}{luhn_digit(body)}"


def mod97_10_digits(payload: str) -> str:
    """The two ISO 7064 Mod 97-10 check digits to append to `payload` (digits and capital
    letters): mod97_10_digits("99991234567890121414") == "90"."""
    if not _ALPHANUMERIC.fullmatch(payload):
        raise ValueError("mod97_10_digits takes digits and capital letters A-Z only")
    return str(mod_97_10.calc_check_digits(payload))


def is_mod97_10_valid(text: str) -> bool:
    """Whether `text` ends with the two Mod 97-10 check digits of what precedes them. The
    digits are compared, not only the remainder: "00" and "01" (which the standard never
    computes) would pass a bare `mod_97_10.is_valid` where "97" and "98" belong."""
    return (
        len(text) >= 3
        and bool(_ALPHANUMERIC.fullmatch(text))
        and mod_97_10.is_valid(text)
        and text[-2:] == mod97_10_digits(text[:-2])
    )


def numbered_mod97_10(prefix: str, sequence: int, width: int) -> str:
    """`prefix`, zero-padded `sequence`, two Mod 97-10 digits computed over both (`prefix` in
    capital letters and digits): numbered_mod97_10("P", 42, 9) == "P00000004241"."""
    body = f"{prefix}{sequence:0{width}d}"
    return f"{body}{mod97_10_digits(body)}"
