"""Retention on a TimescaleDB hypertable, on plain PostgreSQL: chunks dropped whole, rows counted.

PostgreSQL only (a stand-in catalog of inherited tables): test_prune.py is the
part that SQLite runs too (test_store_sqlite.py).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices.models import Device
from telemetry.management.commands.prune import prune_lines
from telemetry.models import Reading
from telemetry.services import PruneCounts, readings_prune, readings_store_batch
from telemetry.timescale.chunks import (
    Chunk,
    ChunksDropped,
    chunks_whole_before,
    readings_chunks,
    readings_chunks_drop,
)
from telemetry.values import datetime_to_ms
from tests.factories import make_device, make_user
from tests.telemetry.timescale_catalog import catalog_create, chunk_add

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY_MS = 86_400_000


# TimescaleDB's retention, on plain PostgreSQL. A hypertable's chunks are tables that
# inherit from it, each with a CHECK on its time range and its own copy of the
# foreign key to devices (deferred, as Django creates it); drop_chunks drops them.
# The stand-in below is exactly that, with the chunks listed in a stand-in
# timescaledb_information.chunks and a drop_chunks function (timescale_catalog).
HOUR = timedelta(hours=1)


@dataclass
class Chunked:
    """Readings in two whole chunks past the cut-off, a straddling chunk, and recent ones."""

    before: datetime
    chunks: list[Chunk]
    in_chunks: int  # rows in the two whole chunks
    between: int  # rows after the last whole chunk and before the cut-off
    kept: int


def chunk_table(chunk: Chunk) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "{chunk.name}" (CHECK (ts >= %s AND ts < %s)) '
            "INHERITS (telemetry_reading)",
            [chunk.range_start, chunk.range_end],
        )
        cursor.execute(
            f'ALTER TABLE "{chunk.name}" ADD FOREIGN KEY (device_id) '
            f"REFERENCES {Device._meta.db_table} (id) DEFERRABLE INITIALLY DEFERRED"
        )


def chunk_insert(chunk: Chunk, device: Device, metric: str, count: int) -> None:
    """Insert `count` readings into the chunk, as an INSERT into the hypertable would."""
    with connection.cursor() as cursor:
        cursor.executemany(
            f'INSERT INTO "{chunk.name}" (device_id, metric, ts, value, kind) '
            "VALUES (%s, %s, %s, 1.0, 0)",
            [
                (device.pk, metric, chunk.range_start + i * timedelta(seconds=1))
                for i in range(count)
            ],
        )


@pytest.fixture
def chunked(settings, monkeypatch):
    """Build the stand-in hypertable around a cut-off `now` minus 30 days, in this transaction."""

    def build(now: datetime) -> Chunked:
        settings.HUB = {**settings.HUB, "RAW_RETENTION_DAYS": 30}
        before = now - timedelta(days=30)
        boundary = before - 6 * HOUR
        whole = [
            Chunk("public", "_hyper_1_1_chunk", boundary - 24 * HOUR, boundary - 12 * HOUR),
            Chunk("public", "_hyper_1_2_chunk", boundary - 12 * HOUR, boundary),
        ]
        # The chunk holding the cut-off, and today's: not dropped, so no table needed.
        straddling = Chunk("public", "_hyper_1_3_chunk", boundary, boundary + 24 * HOUR)
        today = Chunk("public", "_hyper_1_4_chunk", now - HOUR, now + 23 * HOUR)
        owner = make_user()
        p1, _ = make_device(owner, "c1")
        p2, _ = make_device(owner, "c2")
        # Rows the row-by-row prune deletes: 7 of (c1, t) and 3 of (c2, h).
        between = [("c1", "t", datetime_to_ms(before - HOUR) - i, 2.0) for i in range(7)]
        between += [("c2", "h", datetime_to_ms(before - 2 * HOUR) - i, 2.0) for i in range(3)]
        kept = [
            ("c1", "t", datetime_to_ms(before + HOUR), 3.0),
            ("c2", "h", datetime_to_ms(now), 3.0),
        ]
        readings_store_batch(readings=between + kept, received_at=now)
        for chunk in whole:
            chunk_table(chunk)
        chunk_insert(whole[0], p1, "t", 6)
        chunk_insert(whole[0], p2, "h", 5)
        chunk_insert(whole[1], p1, "t", 4)
        catalog_create(drop_chunks=True)
        for chunk in [*whole, straddling, today]:
            chunk_add(chunk.schema, chunk.name, chunk.range_start, chunk.range_end)
        monkeypatch.setattr("telemetry.services.readings_hypertable", lambda conn: True)
        return Chunked(before, [*whole, straddling, today], 15, len(between), len(kept))

    return build


def table_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f'"{name}"'])
        return cursor.fetchone()[0]


def test_a_chunk_with_pending_trigger_events_cannot_be_dropped_until_its_checks_have_run(chunked):
    """The finding's error class on plain PostgreSQL, and the hub's way past it."""
    stand_in = chunked(NOW)
    name = stand_in.chunks[0].name
    # This transaction inserted into the chunk: its deferred foreign-key checks are pending.
    with (
        pytest.raises(
            OperationalError,
            match=f'cannot DROP TABLE "{name}" because it has pending trigger events',
        ),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f'DROP TABLE "{name}"')
    assert table_exists(name)
    dropped = readings_chunks_drop(connection, stand_in.before)
    assert dropped == ChunksDropped(chunks=2, rows=stand_in.in_chunks)
    assert not table_exists("_hyper_1_1_chunk") and not table_exists("_hyper_1_2_chunk")
    assert [chunk.name for chunk in readings_chunks(connection)] == [
        "_hyper_1_3_chunk",
        "_hyper_1_4_chunk",
    ]


def test_prune_on_a_hypertable_drops_whole_chunks_counting_their_rows_then_deletes_the_rest(
    chunked,
):
    stand_in = chunked(NOW)
    assert Reading.objects.filter(ts__lt=stand_in.before).count() == 15 + 10
    with CaptureQueriesContext(connection) as queries:
        counts = readings_prune(now=NOW, batch_size=3)
    # Chunks and rows apart: 2 chunks holding 15 readings, then 10 deleted row by row.
    assert counts.chunks == ChunksDropped(chunks=2, rows=15)
    assert (counts.readings, counts.readings_deleted) == (25, 10)
    assert not table_exists("_hyper_1_1_chunk") and not table_exists("_hyper_1_2_chunk")
    # Nothing before the cut-off is kept (not even the straddling chunk's older part).
    assert not Reading.objects.filter(ts__lt=stand_in.before).exists()
    assert Reading.objects.count() == stand_in.kept
    # --batch-size bounds the row deletes: 7 rows as 3 + 3 + 1, and 3 rows as 3 + 0.
    deletes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('DELETE FROM "telemetry_reading"')
    ]
    assert len(deletes) == 5
    assert all('"device_id" =' in sql and '"metric" =' in sql for sql in deletes)


def test_hub_prune_prints_chunks_and_rows_apart(chunked):
    stand_in = chunked(timezone.now())
    out = io.StringIO()
    call_command("prune", "--batch-size", "4", stdout=out)
    readings, rollups = out.getvalue().splitlines()
    assert re.fullmatch(
        r"readings: 25 deleted \(older than [-0-9T:+]+\): 15 in 2 whole chunks dropped, "
        r"10 deleted row by row in batches of at most 4",
        readings,
    ), readings
    assert rollups.startswith("rollups_1m: 0 deleted (older than ")
    assert not Reading.objects.filter(ts__lt=stand_in.before).exists()


def test_chunks_dropped_are_those_ending_by_the_cut_off():
    cut = NOW
    day = timedelta(days=1)
    ends_before = Chunk("public", "a", cut - 2 * day, cut - day)
    ends_at = Chunk("public", "b", cut - day, cut)
    straddles = Chunk("public", "c", cut - HOUR, cut - HOUR + day)
    later = Chunk("public", "d", cut, cut + day)
    assert chunks_whole_before([ends_before, ends_at, straddles, later], cut) == [
        ends_before,
        ends_at,
    ]
    assert chunks_whole_before([straddles, later], cut) == []
    assert chunks_whole_before([], cut) == []


def test_prune_lines_say_chunks_and_rows_apart():
    before = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    rollups_before = datetime(2025, 11, 26, 12, 0, tzinfo=UTC)
    plain = PruneCounts(80, 8, before, rollups_before)
    assert prune_lines(plain, 10_000).splitlines() == [
        "readings: 80 deleted (older than 2026-10-27T12:00:00+00:00)",
        "rollups_1m: 8 deleted (older than 2025-11-26T12:00:00+00:00)",
    ]
    chunked = PruneCounts(15_712, 0, before, rollups_before, ChunksDropped(6, 15_562))
    assert prune_lines(chunked, 10_000).splitlines()[0] == (
        "readings: 15712 deleted (older than 2026-10-27T12:00:00+00:00): 15562 in 6 whole "
        "chunks dropped, 150 deleted row by row in batches of at most 10000"
    )
