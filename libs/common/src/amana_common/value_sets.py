"""Value sets (statuses, kinds) shared by the API, the model and the database.

A value set is one `Literal` (the event contracts hold those that events carry, such as
`ProviderStatus`). The pydantic schemas use it as a field type; the model derives its CHECK
constraint from it with `one_of` or `subset_of`; the migration that creates or changes the
constraint writes the same helper with the values spelt out, because a migration is history
and must not change when the Literal does. The drift check (`testing/schema.py`) compares the
migrated database's CHECK constraints with the model's, so a value added to the Literal without
a migration fails the tests.

CHECK constraints on a varchar column, not PostgreSQL enum types: a CHECK is replaced in one
transactional statement, where an enum's values can be added but never removed or renamed.
"""

from __future__ import annotations

from typing import Any, get_args


def values_of(value_set: Any) -> tuple[str, ...]:
    """The values of a `Literal["a", "b"]`, in declaration order."""
    values = get_args(value_set)
    if not values or not all(isinstance(value, str) for value in values):
        raise TypeError(f"{value_set!r} is not a Literal of strings")
    return values


def _sql_strings(values: tuple[str, ...]) -> str:
    return ", ".join("'" + value.replace("'", "''") + "'" for value in values)


def one_of(column: str, value_set: Any) -> str:
    """SQL: `column` holds one of the values (`status IN ('active', 'suspended')`)."""
    values = value_set if isinstance(value_set, tuple) else values_of(value_set)
    return f"{column} IN ({_sql_strings(values)})"


def subset_of(column: str, value_set: Any) -> str:
    """SQL: every element of the array `column` is one of the values."""
    values = value_set if isinstance(value_set, tuple) else values_of(value_set)
    return f"{column} <@ ARRAY[{_sql_strings(values)}]::varchar[]"
