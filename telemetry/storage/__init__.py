"""Dialect-specific parts of the store: PostgreSQL's fast path and the portable path for SQLite.

Each module offers `readings_insert(connection, rows, units)`: insert the rows
that are not stored yet, fold exactly those into the rollups and latest values
(with the unit given for their metric, if any), and return their keys. Both run
inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.db.backends.base.base import BaseDatabaseWrapper

from telemetry.storage import portable, postgresql
from telemetry.values import WireValue

# (device id, metric, ts in epoch ms, value), sorted: every writer touches rows in
# the same order, so concurrent batches cannot deadlock.
Row = tuple[int, str, int, WireValue]
Key = tuple[int, str, int]
# (device id, metric) -> the unit the batch gave that metric.
Units = Mapping[tuple[int, str], str]


def readings_insert(
    connection: BaseDatabaseWrapper, rows: Sequence[Row], units: Units | None = None
) -> list[Key]:
    """Insert new readings with their rollups and latest values; return the new rows' keys."""
    if not rows:
        return []
    if connection.vendor == "postgresql":
        return postgresql.readings_insert(connection, rows, units or {})
    return portable.readings_insert(connection, rows, units or {})
