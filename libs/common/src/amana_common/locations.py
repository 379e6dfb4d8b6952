"""The location hierarchy: location codes nest by prefix at a separator.

`KE` contains `KE-047`, which contains `KE-047-0101`: a code's parent is the code cut at its
last separator (`-` or `.`). An area **covers** a code when the area is the code itself or one
of its ancestors, so `KE-047` covers `KE-047` and `KE-047-0101`, but not `KE-0470` (a prefix
counts only when it ends at a separator) and not `KE` (coverage never goes up).

Set-based queries use the ancestors: "areas that cover L" is `area IN ancestors_or_self(L)`,
which an index (or an array overlap `&&`) answers without a scan.
"""

from __future__ import annotations

from collections.abc import Iterable

SEPARATORS = frozenset("-.")


def ancestors_or_self(code: str) -> list[str]:
    """`KE-047-0101` -> `["KE", "KE-047", "KE-047-0101"]`, outermost first."""
    cuts = [code[:i] for i, char in enumerate(code) if i > 0 and char in SEPARATORS]
    return [*cuts, code]


def covers(area: str, code: str) -> bool:
    return area in ancestors_or_self(code)


def covered_by_any(code: str, areas: Iterable[str]) -> bool:
    return not set(ancestors_or_self(code)).isdisjoint(areas)


def descendant_prefixes(area: str) -> tuple[str, ...]:
    """The prefixes every code strictly below `area` starts with: `("KE-047-", "KE-047.")`."""
    return tuple(area + separator for separator in sorted(SEPARATORS))
