"""The TimescaleDB branch: everything the hub does differently when the extension is there.

Plain PostgreSQL and SQLite never reach past `timescale_available`. With the
extension, raw readings live in a hypertable (1-day chunks), chunks older than
COMPRESS_AFTER are compressed, segmented by device and metric, and retention
drops whole chunks instead of deleting rows.
"""

from __future__ import annotations

from datetime import datetime

from django.db.backends.base.base import BaseDatabaseWrapper

READINGS = "telemetry_reading"
CHUNK_INTERVAL = "1 day"
COMPRESS_AFTER = "7 days"


def timescale_available(connection: BaseDatabaseWrapper) -> bool:
    """Tell whether this database can have (or has) the timescaledb extension."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        return cursor.fetchone() is not None


def timescale_enable(connection: BaseDatabaseWrapper) -> None:
    """Make the readings table a compressed hypertable (idempotent; existing rows migrate)."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        cursor.execute(
            "SELECT create_hypertable(%s, 'ts', chunk_time_interval => %s::interval, "
            "migrate_data => true, if_not_exists => true)",
            [READINGS, CHUNK_INTERVAL],
        )
        # Segmenting by series keeps one series' values together: they compress best,
        # and history queries read one segment.
        cursor.execute(
            f"ALTER TABLE {READINGS} SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'device_id, metric', "
            "timescaledb.compress_orderby = 'ts')"
        )
        cursor.execute(
            "SELECT add_compression_policy(%s, %s::interval, if_not_exists => true)",
            [READINGS, COMPRESS_AFTER],
        )


def readings_hypertable(connection: BaseDatabaseWrapper) -> bool:
    """Tell whether raw readings are a hypertable here."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if cursor.fetchone() is None:
            return False
        cursor.execute(
            "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s",
            [READINGS],
        )
        return cursor.fetchone() is not None


def readings_drop_chunks(connection: BaseDatabaseWrapper, before: datetime) -> int:
    """Drop the readings chunks entirely older than `before`; return how many."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT drop_chunks(%s, older_than => %s)", [READINGS, before])
        return len(cursor.fetchall())
