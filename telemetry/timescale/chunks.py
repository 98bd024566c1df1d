"""Retention on the hypertable: drop the chunks wholly past the cut-off, rows counted first.

`drop_chunks(older_than => t)` drops a chunk when its whole range ends at or before
`t` (range_end <= t; TimescaleDB's dimension_slice.c). The rows between the last
whole chunk and the cut-off stay for the row-by-row prune.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from telemetry.timescale.hypertable import READINGS

logger = logging.getLogger(__name__)

_CHUNKS = """
SELECT chunk_schema, chunk_name, range_start, range_end
FROM timescaledb_information.chunks
WHERE hypertable_schema = current_schema() AND hypertable_name = %s
ORDER BY range_start
"""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of raw readings and the time range it holds: [range_start, range_end)."""

    schema: str
    name: str
    range_start: datetime
    range_end: datetime


@dataclass(frozen=True, slots=True)
class ChunksDropped:
    """What dropping whole chunks removed."""

    chunks: int = 0
    rows: int = 0


def chunks_whole_before(chunks: Sequence[Chunk], before: datetime) -> list[Chunk]:
    """Return the chunks `drop_chunks(older_than => before)` drops: those ending by `before`."""
    return [chunk for chunk in chunks if chunk.range_end <= before]


def readings_chunks(connection: BaseDatabaseWrapper) -> list[Chunk]:
    """List the chunks of raw readings, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(_CHUNKS, [READINGS])
        return [Chunk(*row) for row in cursor.fetchall()]


def drop_chunks(connection: BaseDatabaseWrapper, before: datetime) -> list[str]:
    """Drop the chunks of raw readings wholly older than `before`; return their names."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT drop_chunks(%s, older_than => %s)", [READINGS, before])
        return [row[0] for row in cursor.fetchall()]


def readings_chunks_drop(connection: BaseDatabaseWrapper, before: datetime) -> ChunksDropped:
    """Drop the chunks wholly older than `before`, counting their rows first, in one transaction.

    Inside a transaction that has inserted readings, their foreign-key checks
    (deferred to commit) are still pending, and PostgreSQL refuses to drop a table
    with pending trigger events ("cannot DROP TABLE … because it has pending
    trigger events"): the checks run first, as `SET CONSTRAINTS ALL IMMEDIATE` does.
    """
    whole = chunks_whole_before(readings_chunks(connection), before)
    if not whole:
        return ChunksDropped()
    boundary = max(chunk.range_end for chunk in whole)
    with transaction.atomic(using=connection.alias):
        connection.check_constraints()
        with connection.cursor() as cursor:
            # Every row before the boundary is in a chunk that ends by it (chunks do not overlap).
            cursor.execute(f"SELECT count(*) FROM {READINGS} WHERE ts < %s", [boundary])  # noqa: S608
            rows = cursor.fetchone()[0]
        dropped = drop_chunks(connection, boundary)
    if len(dropped) != len(whole):
        # A chunk created or dropped meanwhile: the counts say what was dropped.
        logger.warning("prune: expected to drop %d chunks, dropped %d", len(whole), len(dropped))
    return ChunksDropped(len(dropped), rows)
