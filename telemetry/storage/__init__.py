"""Dialect-specific parts of the store: PostgreSQL's fast path and the portable path for SQLite.

Each module offers `readings_insert(connection, rows, units, max_metrics)`: leave
out the readings of metrics a device may not create (past `max_metrics`), insert
the rows that are not stored yet, fold exactly those into the rollups and latest
values (with the unit given for their metric, if any), and return their keys and
what was left out. Both run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from django.db.backends.base.base import BaseDatabaseWrapper

from telemetry.storage import portable, postgresql
from telemetry.storage.cardinality import Refused
from telemetry.turns import Turn
from telemetry.values import WireValue

# (device id, metric, ts in epoch ms, value), sorted: every writer touches rows in
# the same order, so concurrent batches cannot deadlock.
Row = tuple[int, str, int, WireValue]
Key = tuple[int, str, int]
# (device id, metric) -> the unit the batch gave that metric.
Units = Mapping[tuple[int, str], str]


@dataclass(slots=True)
class Inserted:
    """The keys of the rows a batch added, and the readings refused for their new metric."""

    keys: list[Key] = field(default_factory=list)
    # (device id, metric) -> readings left out: the device has max_metrics metrics already.
    refused: Refused = field(default_factory=dict)


def readings_insert(
    connection: BaseDatabaseWrapper,
    rows: Sequence[Row],
    units: Units | None = None,
    *,
    max_metrics: int | None = None,
    turn: Turn | None = None,
) -> Inserted:
    """Insert new readings with their rollups and latest values, at most `max_metrics` per device.

    Readings of a metric the device already has are always taken; a metric it
    does not have yet is created only while the device has fewer than `max_metrics`.
    With a `turn` (telemetry/turns.py), the rows are written once the batches taken
    before this one have written theirs; the turn ends when they are. Only PostgreSQL
    stores batches at once: elsewhere there are no turns (telemetry.ingest.batches_at_once).
    """
    if not rows:
        return Inserted()
    if connection.vendor == "postgresql":
        keys, refused = postgresql.readings_insert(connection, rows, units or {}, max_metrics, turn)
    else:
        keys, refused = portable.readings_insert(connection, rows, units or {}, max_metrics)
    return Inserted(keys, refused)
