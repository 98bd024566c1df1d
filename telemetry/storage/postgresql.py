"""The PostgreSQL store: COPY the batch into a temporary table, then one statement does the rest.

One round trip inserts the new readings, folds exactly those into both rollups
and the latest values, and returns their keys; the aggregation runs in the
server, so the worker's CPU goes to decoding and fan-out instead.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from telemetry.values import WireValue, value_to_columns

Row = tuple[int, str, int, WireValue]
Key = tuple[int, str, int]

STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS ingest_batch (
    device_id bigint, metric text, ts_ms bigint, value float8, text text, kind smallint
) ON COMMIT DELETE ROWS
"""
COPY = "COPY ingest_batch (device_id, metric, ts_ms, value, text, kind) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = ["int8", "text", "int8", "float8", "text", "int2"]
_staged: weakref.WeakSet[Any] = weakref.WeakSet()


def _rollup(table: str, width: str) -> str:
    # Sums that would overflow a double become NaN instead of failing the batch on every retry.
    return f"""
    {table}_new AS (
        INSERT INTO {table} AS t
            (device_id, metric, bucket, count, sum, min, max, first, first_ts, last, last_ts)
        SELECT device_id, metric, date_bin('{width}', ts, timestamptz 'epoch'), count(*),
               sum(value), min(value), max(value),
               (array_agg(value ORDER BY ts))[1], min(ts),
               (array_agg(value ORDER BY ts DESC))[1], max(ts)
        FROM new WHERE kind <> 3
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (device_id, metric, bucket) DO UPDATE SET
            count = t.count + excluded.count,
            sum = CASE WHEN abs(t.sum) < 1e307 AND abs(excluded.sum) < 1e307
                  THEN t.sum + excluded.sum ELSE 'NaN'::float8 END,
            min = LEAST(t.min, excluded.min),
            max = GREATEST(t.max, excluded.max),
            first = CASE WHEN excluded.first_ts < t.first_ts THEN excluded.first ELSE t.first END,
            first_ts = LEAST(t.first_ts, excluded.first_ts),
            last = CASE WHEN excluded.last_ts > t.last_ts THEN excluded.last ELSE t.last END,
            last_ts = GREATEST(t.last_ts, excluded.last_ts)
    )"""  # noqa: S608 - table names are constants


STORE = f"""
WITH new AS (
    INSERT INTO telemetry_reading (device_id, metric, ts, value, text, kind)
    SELECT device_id, metric, timestamptz 'epoch' + ts_ms * interval '1 millisecond',
           value, text, kind
    FROM ingest_batch ORDER BY device_id, metric, ts_ms
    ON CONFLICT DO NOTHING
    RETURNING device_id, metric, ts, value, text, kind
),
{_rollup("telemetry_rollup_1m", "1 minute")},
{_rollup("telemetry_rollup_1h", "1 hour")},
latest_new AS (
    INSERT INTO telemetry_latest AS t (device_id, metric, ts, value, text, kind)
    SELECT DISTINCT ON (device_id, metric) device_id, metric, ts, value, text, kind
    FROM new ORDER BY device_id, metric, ts DESC
    ON CONFLICT (device_id, metric) DO UPDATE SET
        ts = excluded.ts, value = excluded.value, text = excluded.text, kind = excluded.kind
        WHERE excluded.ts > t.ts
)
SELECT device_id, metric, (extract(epoch FROM ts) * 1000)::bigint FROM new
"""  # noqa: S608 - built from constants


def readings_insert(connection: BaseDatabaseWrapper, rows: Sequence[Row]) -> list[Key]:
    """Insert new readings, fold them into rollups and latest values, return their keys."""
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's own cursor, for COPY
        # The staging table lives as long as the session: create it once per connection,
        # and count it as created only once that transaction commits.
        session = cursor.connection
        if session not in _staged:
            cursor.execute(STAGING)
            connection.on_commit(lambda: _staged.add(session))
        with cursor.copy(COPY) as copy:
            copy.set_types(COPY_TYPES)
            for device_id, metric, ts, value in rows:
                copy.write_row((device_id, metric, ts, *value_to_columns(value)))
        cursor.execute(STORE)
        return [(device_id, metric, int(ts)) for device_id, metric, ts in cursor.fetchall()]
