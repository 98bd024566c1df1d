"""The PostgreSQL store: COPY the batch into a temporary table, then one statement does the rest.

One round trip inserts the new readings, folds exactly those into both rollups
and the latest values, and returns their keys; the aggregation runs in the
server, so the worker's CPU goes to decoding and fan-out instead. Units (SenML
batches only) go into a second temporary table that the statement joins; a
batch without units runs the statement without that join.

Before that, one query over the staged batch finds the metrics no device has
yet (usually none). Devices with such metrics are locked (a transaction-scoped
advisory lock per device, taken in id order) and counted, so concurrent ingest
workers never take a device past its metric limit; the refused readings leave
the staging table.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from telemetry.models import ValueKind
from telemetry.storage.cardinality import Refused, metrics_refused
from telemetry.turns import Turn
from telemetry.values import WireValue, value_to_columns

Row = tuple[int, str, int, WireValue]
Key = tuple[int, str, int]

STAGING = (
    """
    CREATE TEMPORARY TABLE IF NOT EXISTS ingest_batch (
        device_id bigint, metric text, ts_ms bigint, value float8, text text, kind smallint
    ) ON COMMIT DELETE ROWS
    """,
    """
    CREATE TEMPORARY TABLE IF NOT EXISTS ingest_units (
        device_id bigint, metric text, unit text
    ) ON COMMIT DELETE ROWS
    """,
)
COPY = "COPY ingest_batch (device_id, metric, ts_ms, value, text, kind) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = ["int8", "text", "int8", "float8", "text", "int2"]
COPY_UNITS = "COPY ingest_units (device_id, metric, unit) FROM STDIN (FORMAT BINARY)"
COPY_UNITS_TYPES = ["int8", "text", "text"]
_staged: weakref.WeakSet[Any] = weakref.WeakSet()


def _rollup(table: str, width: str) -> str:
    # Text readings have no numeric value: rollups leave them out.
    # Sums that would overflow a double become NaN instead of failing the batch on every retry.
    return f"""
    {table}_new AS (
        INSERT INTO {table} AS t
            (device_id, metric, bucket, count, sum, min, max, first, first_ts, last, last_ts)
        SELECT device_id, metric, date_bin('{width}', ts, timestamptz 'epoch'), count(*),
               sum(value), min(value), max(value),
               (array_agg(value ORDER BY ts))[1], min(ts),
               (array_agg(value ORDER BY ts DESC))[1], max(ts)
        FROM new WHERE kind <> {ValueKind.STR.value}
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


# Without units: a metric's unit stays as it is.
_LATEST = """
latest_new AS (
    INSERT INTO telemetry_latest AS t (device_id, metric, ts, value, text, kind)
    SELECT DISTINCT ON (device_id, metric) device_id, metric, ts, value, text, kind
    FROM new ORDER BY device_id, metric, ts DESC
    ON CONFLICT (device_id, metric) DO UPDATE SET
        ts = excluded.ts, value = excluded.value, text = excluded.text, kind = excluded.kind
        WHERE excluded.ts > t.ts
)"""
# With units: a given unit is kept even when the new readings are older than the latest.
_LATEST_WITH_UNITS = """
latest_new AS (
    INSERT INTO telemetry_latest AS t (device_id, metric, ts, value, text, kind, unit)
    SELECT DISTINCT ON (n.device_id, n.metric)
           n.device_id, n.metric, n.ts, n.value, n.text, n.kind, u.unit
    FROM new n LEFT JOIN ingest_units u ON u.device_id = n.device_id AND u.metric = n.metric
    ORDER BY n.device_id, n.metric, n.ts DESC
    ON CONFLICT (device_id, metric) DO UPDATE SET
        ts = CASE WHEN excluded.ts > t.ts THEN excluded.ts ELSE t.ts END,
        value = CASE WHEN excluded.ts > t.ts THEN excluded.value ELSE t.value END,
        text = CASE WHEN excluded.ts > t.ts THEN excluded.text ELSE t.text END,
        kind = CASE WHEN excluded.ts > t.ts THEN excluded.kind ELSE t.kind END,
        unit = COALESCE(excluded.unit, t.unit)
        WHERE excluded.ts > t.ts
           OR (excluded.unit IS NOT NULL AND excluded.unit IS DISTINCT FROM t.unit)
)"""


def _store(latest: str) -> str:
    return f"""
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
{latest}
SELECT device_id, metric, (extract(epoch FROM ts) * 1000)::bigint FROM new
"""  # noqa: S608 - built from constants


STORE = _store(_LATEST)
STORE_WITH_UNITS = _store(_LATEST_WITH_UNITS)

# The staged (device, metric) pairs no device has yet, with their readings in the batch.
NEW_METRICS = """
SELECT b.device_id, b.metric, count(*) FROM ingest_batch b
WHERE NOT EXISTS (
    SELECT 1 FROM telemetry_latest l WHERE l.device_id = b.device_id AND l.metric = b.metric
){devices}
GROUP BY 1, 2
"""
# Advisory-lock key space of the metric limit: (this, device id) pairs.
METRICS_LOCK = 0x6D657472  # "metr"
# Held until commit. Taken in device id order, before any row lock, so batches cannot deadlock.
LOCK_DEVICES = """
SELECT pg_advisory_xact_lock(%s, (d %% 2147483648)::int4)
FROM (SELECT DISTINCT d FROM unnest(%s::bigint[]) AS d ORDER BY d) AS devices
"""
COUNT_METRICS = (
    "SELECT device_id, count(*) FROM telemetry_latest WHERE device_id = ANY(%s) GROUP BY 1"
)
DROP_REFUSED = """
DELETE FROM ingest_batch b USING unnest(%s::bigint[], %s::text[]) AS r(device_id, metric)
WHERE b.device_id = r.device_id AND b.metric = r.metric
"""


def readings_insert(
    connection: BaseDatabaseWrapper,
    rows: Sequence[Row],
    units: Mapping[tuple[int, str], str],
    max_metrics: int | None,
    turn: Turn | None = None,
) -> tuple[list[Key], Refused]:
    """Insert new readings, fold them into rollups and latest values, return their keys.

    Readings of new metrics past `max_metrics` per device are left out and returned.
    With a `turn`, the batch is staged at once, then waits for it before it writes.
    """
    # psycopg's own cursor raises psycopg's errors: wrapped, they are Django's DatabaseError,
    # which the ingest worker counts as a failed batch (the bridge sends it again).
    with connection.cursor() as wrapper, connection.wrap_database_errors:
        cursor = wrapper.cursor  # psycopg's own cursor, for COPY
        # The staging tables live as long as the session: create them once per
        # connection, and count them as created only once that transaction commits.
        session = cursor.connection
        if session not in _staged:
            for statement in STAGING:
                cursor.execute(statement)
            connection.on_commit(lambda: _staged.add(session))
        with cursor.copy(COPY) as copy:
            copy.set_types(COPY_TYPES)
            for device_id, metric, ts, value in rows:
                copy.write_row((device_id, metric, ts, *value_to_columns(value)))
        if units:
            # Emptied at commit; this also empties it between batches of one transaction.
            cursor.execute("DELETE FROM ingest_units")
            with cursor.copy(COPY_UNITS) as copy:
                copy.set_types(COPY_UNITS_TYPES)
                for (device_id, metric), unit in sorted(units.items()):
                    copy.write_row((device_id, metric, unit))
        if turn is not None:
            turn.wait()  # staged, holding no lock but on its own staging tables
        try:
            refused = _refuse_new_metrics(cursor, max_metrics) if max_metrics is not None else {}
            cursor.execute(STORE_WITH_UNITS if units else STORE)
        finally:
            if turn is not None:
                turn.end()
        keys = [(device_id, metric, int(ts)) for device_id, metric, ts in cursor.fetchall()]
        return keys, refused


def _refuse_new_metrics(cursor: Any, limit: int) -> Refused:
    """Drop from the staged batch the readings of new metrics past `limit` per device."""
    cursor.execute(NEW_METRICS.format(devices=""))
    candidates = cursor.fetchall()
    if not candidates:
        return {}  # the usual batch: every metric exists already
    devices = sorted({device_id for device_id, _, _ in candidates})
    cursor.execute(LOCK_DEVICES, (METRICS_LOCK, devices))
    # Under the locks: what other workers committed meanwhile is counted, and no longer new.
    cursor.execute(NEW_METRICS.format(devices=" AND b.device_id = ANY(%s)"), (devices,))
    new = cursor.fetchall()
    cursor.execute(COUNT_METRICS, (devices,))
    refused = metrics_refused(new, dict(cursor.fetchall()), limit)
    if refused:
        pairs = sorted(refused)
        cursor.execute(DROP_REFUSED, ([pair[0] for pair in pairs], [pair[1] for pair in pairs]))
    return refused
