"""Drift check: the Alembic migrations build exactly the tables the models describe.

Two comparisons, both against a database the real migrations built:

- Alembic's autogenerate comparison: tables, columns and their types, nullability, indexes,
  unique and foreign keys;
- what autogenerate does not compare, read from PostgreSQL's own catalog: CHECK constraints
  (by name and definition), index definitions (partial-index predicates, methods) and column
  defaults. The models' tables are created in a scratch schema of the same database inside a
  transaction that is rolled back, so PostgreSQL normalises both sides' expressions the same
  way: `status IN ('a', 'b')` written in a model and in a migration compare equal.

The shared infrastructure tables (outbox, processed_events, idempotency_keys) are compared as
well: the migrations create them from frozen DDL (`amana_common.migrations`), so a change to
`amana_common.tables` without a migration is reported here.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from amana_common.tables import INFRA_METADATA

SCRATCH_SCHEMA = "amana_drift_models"

# (kind, table, name) -> definition, for one schema; the schema's name is left out.
_CATALOG = {
    "check": """
        SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE k.contype = 'c' AND n.nspname = :schema""",
    "index": """
        SELECT c.relname, i.relname, pg_get_indexdef(i.oid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = :schema""",
    "default": """
        SELECT c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid
        JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = :schema""",
}


Difference = tuple[str, str, str | None, object]
"""(what, table, column or constraint or index, detail): `("check differs", "providers",
"ck_providers_status", {"database": ..., "models": ...})`, `("modify_type", "outbox",
"last_error", {...})`, `("add_column", "outbox", "priority", None)`: alembic's operation names
say what a migration would have to do to the database to match the models."""


async def schema_differences(
    database_url: str, models: MetaData, infrastructure: MetaData = INFRA_METADATA
) -> list[Difference]:
    """What differs between the migrated database and `models` plus `infrastructure`; empty
    when they agree. Alembic's differences come first, then the catalog's."""
    expected = MetaData(naming_convention=models.naming_convention)
    for table in [*models.tables.values(), *infrastructure.tables.values()]:
        table.to_metadata(expected)

    def compare(connection: Connection) -> list[Difference]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [_described(d) for d in _flattened(compare_metadata(context, expected))]
        transaction = connection.begin_nested()
        try:
            differences += _catalog_differences(connection, expected)
        finally:
            transaction.rollback()
        return differences

    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


def _flattened(differences: list[Any]) -> list[tuple[Any, ...]]:
    """Alembic nests the changes of one column in a list."""
    flat: list[tuple[Any, ...]] = []
    for difference in differences:
        flat += difference if isinstance(difference, list) else [difference]
    return flat


def _described(difference: tuple[Any, ...]) -> Difference:
    kind, *rest = difference
    if kind.startswith("modify_"):  # (kind, schema, table, column, existing, database, models)
        return kind, rest[1], rest[2], {"database": rest[4], "models": rest[5]}
    if kind in ("add_column", "remove_column"):  # (kind, schema, table, column)
        return kind, rest[1], rest[2].name, None
    item = rest[0]  # a Table, Index or constraint
    table = item if kind.endswith("_table") else getattr(item, "table", None)
    name = None if kind.endswith("_table") else getattr(item, "name", None)
    return kind, getattr(table, "name", "?"), name, None


def _catalog_differences(connection: Connection, expected: MetaData) -> list[Difference]:
    """Creates `expected` in a scratch schema and compares the two schemas' catalogs."""
    migrated_schema = connection.scalar(text("SELECT current_schema()"))
    connection.execute(text(f"CREATE SCHEMA {SCRATCH_SCHEMA}"))
    connection.execute(text(f"SET LOCAL search_path TO {SCRATCH_SCHEMA}"))
    expected.create_all(connection)
    tables = set(expected.tables)
    migrated = _catalog(connection, str(migrated_schema), tables)
    # Objects the models name by their schema (an extension's function or operator class in
    # `public`, which the scratch schema's search path does not show) compare unqualified.
    modelled = _catalog(connection, SCRATCH_SCHEMA, tables, str(migrated_schema))
    differences: list[Difference] = []
    for key in sorted(migrated.keys() | modelled.keys()):
        kind, table, name = key
        if key not in modelled:
            differences.append((f"{kind} not in the models", table, name, migrated[key]))
        elif key not in migrated:
            differences.append((f"{kind} not in the database", table, name, modelled[key]))
        elif migrated[key] != modelled[key]:
            found = {"database": migrated[key], "models": modelled[key]}
            differences.append((f"{kind} differs", table, name, found))
    return differences


def _catalog(
    connection: Connection, schema: str, tables: set[str], *also_unqualified: str
) -> dict[Any, str]:
    found: dict[Any, str] = {}
    for kind, query in _CATALOG.items():
        for table, name, definition in connection.execute(text(query), {"schema": schema}):
            if table in tables:
                for qualifier in (schema, *also_unqualified):
                    definition = definition.replace(f"{qualifier}.", "")
                found[kind, table, name] = definition
    return found
