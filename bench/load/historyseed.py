"""Fill the history row's database in SQL: raw readings, then rollups and latest values from them.

Layout of a raw table of N rows, everything ending at one anchor instant:

- N ≥ 3 x 30 days x 86 400 + one per other series: the series device has
  `temperature`, `humidity` and `battery` at 1 Hz for 30 days (2 592 000 rows
  each); the other devices' 3 metrics share the rest, one reading a minute
  back from the anchor.
- Below that, the series device has `temperature` only, N - (other series)
  readings evenly spaced over the 30 days; each other device has one reading
  per metric.

Raw rows go in with `INSERT … SELECT generate_series(…)` while the table's
indexes are dropped (rebuilt after, as the migrations define them) and with
`session_replication_role = replica` (no per-row foreign-key trigger; every
device id exists). The 1-minute and 1-hour rollups and the latest values are
then computed from the raw rows with SQL GROUP BY (minutes from the raw rows,
hours and latest values from the minutes; see the statements), the tables are
vacuumed and analysed as autovacuum would have done, and every hourly rollup
of the series device's temperature is compared with the aggregate of its raw
rows (count, sum, min, max, first, last and their times). Blocking: run it in
a thread.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import psycopg

SERIES_METRICS = ("temperature", "humidity", "battery")
DAY_MS = 86_400_000
TABLES = ("telemetry_reading", "telemetry_rollup_1m", "telemetry_rollup_1h", "telemetry_latest")
VALUE = {
    "temperature": "21 + 4 * sin(i / 13751.0) + ((i * 7919) %% 1000) / 1000.0",
    "humidity": "45 + 10 * cos(i / 20000.0) + ((i * 104729) %% 500) / 100.0",
    "battery": "4.2 - (i %% 86400) / 200000.0",
}
# 1-minute rollups from the raw rows in one hashed pass. first/last are the values at
# min(ts)/max(ts), found as min/max of [epoch µs, value] arrays (compared element by
# element; µs < 2^53 are exact in float8), which equals the hub's
# (array_agg(value ORDER BY ts))[1] and costs no sort per group.
ROLLUP_MINUTE = """
INSERT INTO telemetry_rollup_1m
    (device_id, metric, bucket, count, sum, min, max, first, first_ts, last, last_ts)
SELECT device_id, metric, bucket, n, total, low, high, first_pair[2],
       timestamptz 'epoch' + first_pair[1] * interval '1 microsecond', last_pair[2],
       timestamptz 'epoch' + last_pair[1] * interval '1 microsecond'
FROM (
    SELECT device_id, metric, date_bin('1 minute', ts, timestamptz 'epoch') AS bucket,
           count(*) AS n, sum(value) AS total, min(value) AS low, max(value) AS high,
           min(ARRAY[(extract(epoch FROM ts) * 1000000)::float8, value]) AS first_pair,
           max(ARRAY[(extract(epoch FROM ts) * 1000000)::float8, value]) AS last_pair
    FROM telemetry_reading WHERE kind <> 3
    GROUP BY 1, 2, 3
) AS minutes
"""
# Hours from the minutes: sums of counts and sums, min of mins, max of maxes, the first
# of the earliest minute and the last of the latest; equal to aggregating the raw rows
# (the sums up to float rounding, as the hub's own incremental sums).
ROLLUP_HOUR = """
INSERT INTO telemetry_rollup_1h
    (device_id, metric, bucket, count, sum, min, max, first, first_ts, last, last_ts)
SELECT device_id, metric, date_bin('1 hour', bucket, timestamptz 'epoch'), sum(count),
       sum(sum), min(min), max(max),
       (array_agg(first ORDER BY first_ts))[1], min(first_ts),
       (array_agg(last ORDER BY last_ts DESC))[1], max(last_ts)
FROM telemetry_rollup_1m
GROUP BY 1, 2, 3
"""
# Latest values: the last reading of each series' newest minute (every reading is numeric).
LATEST = """
INSERT INTO telemetry_latest (device_id, metric, ts, value, text, kind)
SELECT DISTINCT ON (device_id, metric) device_id, metric, last_ts, last, NULL, 0
FROM telemetry_rollup_1m ORDER BY device_id, metric, bucket DESC
"""


def layout(size: int, devices: int, days: int) -> dict[str, Any]:
    """Return how a raw table of about `size` rows is laid out (see the module docstring)."""
    others = (devices - 1) * len(SERIES_METRICS)
    per_metric = days * 86_400
    if size >= per_metric * len(SERIES_METRICS) + others:
        rest = size - per_metric * len(SERIES_METRICS)
        return {
            "series_metrics": list(SERIES_METRICS),
            "series_rows_per_metric": per_metric,
            "series_step_ms": 1000.0,
            "other_rows_per_series": max(1, rest // others),
        }
    count = max(1000, size - others)
    return {
        "series_metrics": ["temperature"],
        "series_rows_per_metric": count,
        "series_step_ms": days * DAY_MS / count,
        "other_rows_per_series": 1,
    }


def _indexes(conn: psycopg.Connection) -> list[tuple[str, str, bool]]:
    """Return (name, definition, is the primary key) of the raw table's indexes."""
    rows = conn.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid), x.indisprimary,"
        " (SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = 'telemetry_reading'::regclass"
    ).fetchall()
    return [
        (name, constraint if primary else definition, primary)
        for name, definition, primary, constraint in rows
    ]


def seed(url: str, device_ids: list[int], size: int, days: int, anchor: datetime) -> dict[str, Any]:
    """Replace the telemetry tables' content with a layout of about `size` raw rows."""
    plan = layout(size, len(device_ids), days)
    timings: dict[str, float] = {}
    series_id, others = device_ids[0], device_ids[1:]

    def step(name: str, started: float) -> float:
        now = time.monotonic()
        timings[name] = now - started
        return now

    with psycopg.connect(url, autocommit=True) as conn:
        clock = time.monotonic()
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET session_replication_role = replica")
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        indexes = _indexes(conn)
        for name, _, primary in indexes:
            if primary:
                conn.execute(f'ALTER TABLE telemetry_reading DROP CONSTRAINT "{name}"')
            else:
                conn.execute(f'DROP INDEX "{name}"')
        clock = step("truncate", clock)
        for metric in plan["series_metrics"]:
            conn.execute(
                "INSERT INTO telemetry_reading (device_id, metric, ts, value, text, kind)"
                f" SELECT %s, %s, %s - i * %s * interval '1 millisecond', {VALUE[metric]}, NULL, 0"
                " FROM generate_series(0, %s::bigint - 1) AS i",
                (series_id, metric, anchor, plan["series_step_ms"], plan["series_rows_per_metric"]),
            )
        clock = step("series device rows", clock)
        for metric in SERIES_METRICS:
            conn.execute(
                "INSERT INTO telemetry_reading (device_id, metric, ts, value, text, kind)"
                f" SELECT d, %s, %s - i * interval '1 minute', {VALUE[metric]} + d %% 7, NULL, 0"
                " FROM unnest(%s::bigint[]) AS d, generate_series(0, %s::bigint - 1) AS i",
                (metric, anchor, others, plan["other_rows_per_series"]),
            )
        clock = step("other devices' rows", clock)
        for name, definition, primary in indexes:
            if primary:
                conn.execute(f'ALTER TABLE telemetry_reading ADD CONSTRAINT "{name}" {definition}')
            else:
                conn.execute(definition)
        clock = step("raw indexes", clock)
        conn.execute(ROLLUP_MINUTE)
        conn.execute(ROLLUP_HOUR)
        conn.execute(LATEST)
        clock = step("rollups and latest", clock)
        conn.execute("SET session_replication_role = DEFAULT")
        for table in TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
        clock = step("vacuum analyze", clock)
        check = consistency(conn, series_id)
        step("consistency check", clock)
    return {"layout": plan, "timings_s": timings, **check}


def consistency(conn: psycopg.Connection, series_id: int) -> dict[str, Any]:
    """Return row counts and whether the rollups equal aggregates of the raw rows."""
    raw, minute, hour, latest, size = conn.execute(
        "SELECT (SELECT count(*) FROM telemetry_reading),"
        " (SELECT sum(count) FROM telemetry_rollup_1m),"
        " (SELECT sum(count) FROM telemetry_rollup_1h),"
        " (SELECT count(*) FROM telemetry_latest),"
        " pg_total_relation_size('telemetry_reading')"
    ).fetchone() or (0, 0, 0, 0, 0)
    # Every hourly rollup of the series device's temperature against the raw rows behind it.
    mismatched = conn.execute(
        "SELECT count(*) FROM (SELECT * FROM telemetry_rollup_1h"
        "  WHERE device_id = %s AND metric = 'temperature') h FULL JOIN ("
        "  SELECT date_bin('1 hour', ts, timestamptz 'epoch') AS bucket, count(*) AS n,"
        "         min(value) AS lo, max(value) AS hi, min(ts) AS f, max(ts) AS l,"
        "         sum(value) AS s, (array_agg(value ORDER BY ts))[1] AS fv,"
        "         (array_agg(value ORDER BY ts DESC))[1] AS lv"
        "  FROM telemetry_reading WHERE device_id = %s AND metric = 'temperature'"
        "  GROUP BY 1) r ON r.bucket = h.bucket"
        " WHERE r.n IS DISTINCT FROM h.count OR r.lo IS DISTINCT FROM h.min"
        "  OR r.hi IS DISTINCT FROM h.max OR r.f IS DISTINCT FROM h.first_ts"
        "  OR r.l IS DISTINCT FROM h.last_ts OR r.fv IS DISTINCT FROM h.first"
        "  OR r.lv IS DISTINCT FROM h.last OR abs(r.s - h.sum) > 1e-9 * greatest(abs(r.s), 1)",
        (series_id, series_id),
    ).fetchone()
    return {
        "raw_rows": int(raw),
        "rollup_1m_count": int(minute or 0),
        "rollup_1h_count": int(hour or 0),
        "latest_rows": int(latest),
        "raw_table_mb": int(size) / 2**20,
        "series_hours_mismatched": int(mismatched[0]) if mismatched else None,
        "rollups_ok": int(minute or 0) == int(hour or 0) == int(raw)
        and mismatched is not None
        and int(mismatched[0]) == 0,
    }
