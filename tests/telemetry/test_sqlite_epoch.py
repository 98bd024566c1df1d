"""SQLite turns stored timestamps into epoch milliseconds exactly, across years 0001 to 9999.

The embedded mode's series path reads times as integers computed by SQLite
(telemetry.selectors._EpochMs) instead of parsing datetimes in Python.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta

from telemetry.selectors import _EpochMs
from telemetry.series import MAX_TS_MS, MIN_TS_MS
from telemetry.values import datetime_to_ms, ms_to_datetime


def stored(moment: datetime) -> str:
    """Spell a time as Django's SQLite backend stores it: naive UTC, microseconds if any."""
    return str(moment.astimezone(UTC).replace(tzinfo=None))


def test_sqlite_epoch_milliseconds_are_exact():
    rng = random.Random(12)
    instants = [MIN_TS_MS, MAX_TS_MS, -1, 0, 1, -999, -1000, -1001, 1_764_136_800_000]
    instants += [rng.randrange(MIN_TS_MS, MAX_TS_MS) for _ in range(20_000)]
    sql = "SELECT " + _EpochMs.template % {"expressions": "?"}
    connection = sqlite3.connect(":memory:")
    for instant in instants:
        moment = ms_to_datetime(instant)
        (got,) = connection.execute(sql, (stored(moment),)).fetchone()
        assert got == instant == datetime_to_ms(moment), stored(moment)


def test_whole_seconds_are_stored_without_a_fraction_and_read_back():
    moment = datetime(2025, 11, 26, 6, 0, tzinfo=UTC) + timedelta(seconds=1)
    assert stored(moment) == "2025-11-26 06:00:01"
    sql = "SELECT " + _EpochMs.template % {"expressions": "?"}
    (got,) = sqlite3.connect(":memory:").execute(sql, (stored(moment),)).fetchone()
    assert got == datetime_to_ms(moment)
