"""Retention: `hub prune` deletes old raw readings and minute rollups, in bounded batches."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from telemetry.models import LatestValue, Reading, RollupHour, RollupMinute
from telemetry.services import readings_prune, readings_store_batch
from telemetry.values import datetime_to_ms
from tests.factories import make_device, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY_MS = 86_400_000


def ago(days: float) -> int:
    return datetime_to_ms(NOW - timedelta(days=days))


def store(readings):
    return readings_store_batch(readings=readings, received_at=NOW)


@pytest.fixture
def history(settings):
    """Two devices with readings from 400 days ago to now; retention 30 and 365 days."""
    settings.HUB = {**settings.HUB, "RAW_RETENTION_DAYS": 30, "ROLLUP_1M_RETENTION_DAYS": 365}
    owner = make_user()
    for uid in ("p1", "p2"):
        make_device(owner, uid)
    rows = [
        (uid, metric, ago(days) + i, float(i))
        for uid in ("p1", "p2")
        for metric in ("t", "h")
        for days in (400, 366, 200, 31, 29.9, 0.5)
        for i in range(5)
    ]
    store(rows)
    return rows


def test_prune_deletes_raw_readings_and_minute_rollups_past_their_retention(history):
    hourly_before = RollupHour.objects.count()
    counts = readings_prune(now=NOW, batch_size=7)
    # Raw: 400, 366, 200 and 31 days old go; 29.9 and 0.5 stay (2 devices x 2 metrics x 5).
    assert counts.readings == 4 * 4 * 5
    assert Reading.objects.count() == 2 * 4 * 5
    assert min(datetime_to_ms(ts) for ts in Reading.objects.values_list("ts", flat=True)) >= ago(30)
    # Minute rollups: 400 and 366 days old go (one minute each per series).
    assert counts.rollups_1m == 2 * 4
    assert not RollupMinute.objects.filter(bucket__lt=NOW - timedelta(days=365)).exists()
    assert RollupMinute.objects.count() == 4 * 4
    # Hourly rollups and latest values stay.
    assert RollupHour.objects.count() == hourly_before
    assert LatestValue.objects.count() == 4
    assert (counts.readings_before, counts.rollups_1m_before) == (
        NOW - timedelta(days=30),
        NOW - timedelta(days=365),
    )


def test_a_second_prune_finds_nothing(history):
    readings_prune(now=NOW)
    again = readings_prune(now=NOW)
    assert (again.readings, again.rollups_1m) == (0, 0)


def test_prune_deletes_in_batches_of_at_most_batch_size(settings):
    settings.HUB = {**settings.HUB, "RAW_RETENTION_DAYS": 30}
    owner = make_user()
    make_device(owner, "many")
    store([("many", "t", ago(40) + i, 1.0) for i in range(25)] + [("many", "t", ago(1), 1.0)])
    with CaptureQueriesContext(connection) as queries:
        counts = readings_prune(now=NOW, batch_size=10)
    assert counts.readings == 25
    deletes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('DELETE FROM "telemetry_reading"')
    ]
    # Two full batches bounded by their 10th row, then the last 5: never the whole table.
    assert len(deletes) == 3
    assert all('"device_id" =' in sql and '"metric" =' in sql for sql in deletes)
    assert Reading.objects.count() == 1


def test_hub_prune_prints_the_counts(history):
    out = io.StringIO()
    call_command("prune", "--batch-size", "3", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("readings: ") and " deleted (older than " in lines[0]
    assert lines[1].startswith("rollups_1m: ")
    assert Reading.objects.count() <= 2 * 4 * 5


def test_bad_batch_size_is_refused(history):
    with pytest.raises(CommandError, match="batch-size"):
        call_command("prune", "--batch-size", "0", stdout=io.StringIO())
    with pytest.raises(ValueError, match="batch_size"):
        readings_prune(now=NOW, batch_size=0)
