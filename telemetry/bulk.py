"""Multi-row INSERT … ON CONFLICT for PostgreSQL and SQLite, in one statement per chunk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

# SQLite binds at most 32766 parameters per statement.
SQLITE_ROWS_PER_STATEMENT = 2000


def bulk_insert(
    connection: BaseDatabaseWrapper,
    *,
    table: str,
    columns: Sequence[str],
    pg_types: Sequence[str],
    rows: Sequence[Sequence[Any]],
    conflict: str,
    returning: str = "",
) -> list[tuple[Any, ...]]:
    """Insert rows with an ON CONFLICT clause; return what RETURNING yields, if asked."""
    if not rows:
        return []
    column_list = ", ".join(columns)
    tail = f" ON CONFLICT {conflict}" + (f" RETURNING {returning}" if returning else "")
    results: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array parameter per column: the statement's size does not grow with rows.
            arrays = [list(column) for column in zip(*rows, strict=True)]
            unnest = ", ".join(f"%s::{pg_type}[]" for pg_type in pg_types)
            # "WHERE true" keeps ON CONFLICT from being read as part of the SELECT.
            sql = (
                f"INSERT INTO {table} AS t ({column_list}) "  # noqa: S608 - identifiers are ours
                f"SELECT * FROM unnest({unnest}) WHERE true{tail}"
            )
            cursor.execute(sql, arrays)
            if returning:
                results.extend(cursor.fetchall())
            return results
        placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
            chunk = rows[start : start + SQLITE_ROWS_PER_STATEMENT]
            values = ", ".join([placeholders] * len(chunk))
            sql = f"INSERT INTO {table} AS t ({column_list}) VALUES {values}{tail}"  # noqa: S608
            cursor.execute(sql, [value for row in chunk for value in row])
            if returning:
                results.extend(cursor.fetchall())
    return results


def scalar_min(connection: BaseDatabaseWrapper) -> str:
    """Return the two-argument minimum function of the connection's SQL dialect."""
    return "LEAST" if connection.vendor == "postgresql" else "MIN"


def scalar_max(connection: BaseDatabaseWrapper) -> str:
    """Return the two-argument maximum function of the connection's SQL dialect."""
    return "GREATEST" if connection.vendor == "postgresql" else "MAX"


def float_add(connection: BaseDatabaseWrapper, left: str, right: str) -> str:
    """Return SQL adding two float columns without raising on overflow.

    PostgreSQL raises "value out of range" when finite doubles overflow, which
    would fail the whole batch again on every retry; an unrepresentable sum
    becomes NaN instead (the API then reports no average). SQLite gives ±Inf.
    """
    if connection.vendor != "postgresql":
        return f"{left} + {right}"
    return (
        f"CASE WHEN abs({left}) < 1e307 AND abs({right}) < 1e307 "
        f"THEN {left} + {right} ELSE 'NaN'::float8 END"
    )
