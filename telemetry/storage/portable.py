"""The portable store (SQLite in embedded mode): multi-row upserts, rollups folded in Python.

The metric limit needs no lock here: the hub's SQLite transactions are IMMEDIATE,
so one batch writes at a time and the count it reads is the count it commits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from telemetry.storage.cardinality import Refused, metrics_refused
from telemetry.values import WireValue, datetime_to_ms, value_to_columns

# SQLite binds at most 32766 parameters per statement.
ROWS_PER_STATEMENT = 2000
# Pairs per `(device_id, metric) IN (VALUES …)` look-up: two parameters each.
PAIRS_PER_STATEMENT = 5000
ROLLUPS = (("telemetry_rollup_1m", 60_000), ("telemetry_rollup_1h", 3_600_000))

Row = tuple[int, str, int, WireValue]
Key = tuple[int, str, int]


def readings_insert(
    connection: BaseDatabaseWrapper,
    rows: Sequence[Row],
    units: Mapping[tuple[int, str], str],
    max_metrics: int | None,
) -> tuple[list[Key], Refused]:
    """Insert new readings, fold them into rollups and latest values, return their keys.

    Readings of new metrics past `max_metrics` per device are left out and returned.
    """
    refused: Refused = {}
    if max_metrics is not None:
        refused = _new_metrics_refused(connection, rows, max_metrics)
        if refused:
            rows = [row for row in rows if (row[0], row[1]) not in refused]
    params = [
        (device_id, metric, _stored_ts(ts), *value_to_columns(value))
        for device_id, metric, ts, value in rows
    ]
    returned = _upsert(
        connection,
        table="telemetry_reading",
        columns=("device_id", "metric", "ts", "value", "text", "kind"),
        rows=params,
        conflict="DO NOTHING",
        returning="device_id, metric, ts",
    )
    keys = [(device_id, metric, _returned_ms(ts)) for device_id, metric, ts in returned]
    values = {(device_id, metric, ts): value for device_id, metric, ts, value in rows}
    new = [(key, values[key]) for key in sorted(keys)]
    _rollups_add(connection, new)
    _latest_update(connection, new, units)
    return keys, refused


def _new_metrics_refused(
    connection: BaseDatabaseWrapper, rows: Sequence[Row], limit: int
) -> Refused:
    """Return the batch's readings of new metrics past `limit` per device, by metric."""
    pairs = Counter((device_id, metric) for device_id, metric, _, _ in rows)
    known = sorted(pairs)
    existing: set[tuple[int, str]] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(known), PAIRS_PER_STATEMENT):
            chunk = known[start : start + PAIRS_PER_STATEMENT]
            values = ", ".join(["(%s, %s)"] * len(chunk))
            cursor.execute(
                "SELECT device_id, metric FROM telemetry_latest "  # noqa: S608 - placeholders only
                f"WHERE (device_id, metric) IN (VALUES {values})",
                [value for pair in chunk for value in pair],
            )
            existing.update(cursor.fetchall())
        new = [(*pair, count) for pair, count in pairs.items() if pair not in existing]
        if not new:
            return {}  # the usual batch: every metric exists already
        devices = sorted({device_id for device_id, _, _ in new})
        cursor.execute(
            "SELECT device_id, count(*) FROM telemetry_latest "  # noqa: S608 - placeholders only
            f"WHERE device_id IN ({', '.join(['%s'] * len(devices))}) GROUP BY device_id",
            devices,
        )
        counts = dict(cursor.fetchall())
    return metrics_refused(new, counts, limit)


_EPOCH_NAIVE = datetime(1970, 1, 1)  # noqa: DTZ001 - SQLite holds naive UTC text


def _stored_ts(ts_ms: int) -> str:
    """Return epoch ms as the text Django's SQLite backend stores for a UTC datetime.

    The same as connection.ops.adapt_datetimefield_value(ms_to_datetime(ts_ms)),
    a third of the cost, which counts at thousands of readings a second.
    """
    return str(_EPOCH_NAIVE + timedelta(milliseconds=ts_ms))


def _returned_ms(value: datetime | str) -> int:
    # Django's SQLite connection parses declared datetime columns into naive UTC datetimes.
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return datetime_to_ms(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _upsert(
    connection: BaseDatabaseWrapper,
    *,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    conflict: str,
    returning: str = "",
) -> list[tuple[Any, ...]]:
    """Insert rows with an ON CONFLICT clause, a chunk per statement; return RETURNING's rows."""
    tail = f" ON CONFLICT {conflict}" + (f" RETURNING {returning}" if returning else "")
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    results: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            values = ", ".join([placeholders] * len(chunk))
            sql = f"INSERT INTO {table} AS t ({', '.join(columns)}) VALUES {values}{tail}"  # noqa: S608
            cursor.execute(sql, [value for row in chunk for value in row])
            if returning:
                results.extend(cursor.fetchall())
    return results


@dataclass(slots=True)
class _Aggregate:
    count: int
    total: float
    low: float
    high: float
    first: float
    first_ts: int
    last: float
    last_ts: int

    def add(self, ts: int, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        if ts < self.first_ts:
            self.first, self.first_ts = value, ts
        if ts > self.last_ts:
            self.last, self.last_ts = value, ts


def _rollups_add(connection: BaseDatabaseWrapper, new: list[tuple[Key, WireValue]]) -> None:
    """Fold newly inserted numeric readings into the 1-minute and 1-hour rollups."""
    for table, width in ROLLUPS:
        buckets: dict[tuple[int, str, int], _Aggregate] = {}
        for (device_id, metric, ts), value in new:
            if isinstance(value, str):
                continue
            number = float(value)
            key = (device_id, metric, ts - ts % width)
            aggregate = buckets.get(key)
            if aggregate is None:
                buckets[key] = _Aggregate(1, number, number, number, number, ts, number, ts)
            else:
                aggregate.add(ts, number)
        rows = [
            (
                device_id,
                metric,
                _stored_ts(bucket),
                a.count,
                a.total,
                a.low,
                a.high,
                a.first,
                _stored_ts(a.first_ts),
                a.last,
                _stored_ts(a.last_ts),
            )
            for (device_id, metric, bucket), a in sorted(buckets.items())
        ]
        _upsert(
            connection,
            table=table,
            columns=(
                "device_id",
                "metric",
                "bucket",
                "count",
                "sum",
                "min",
                "max",
                "first",
                "first_ts",
                "last",
                "last_ts",
            ),
            rows=rows,
            # SQLite's two-argument MIN and MAX are scalar; text timestamps sort in time order.
            conflict=(
                "(device_id, metric, bucket) DO UPDATE SET "
                "count = t.count + excluded.count, sum = t.sum + excluded.sum, "
                "min = MIN(t.min, excluded.min), max = MAX(t.max, excluded.max), "
                "first = CASE WHEN excluded.first_ts < t.first_ts "
                "THEN excluded.first ELSE t.first END, "
                "first_ts = MIN(t.first_ts, excluded.first_ts), "
                "last = CASE WHEN excluded.last_ts > t.last_ts THEN excluded.last ELSE t.last END, "
                "last_ts = MAX(t.last_ts, excluded.last_ts)"
            ),
        )


def _latest_update(
    connection: BaseDatabaseWrapper,
    new: list[tuple[Key, WireValue]],
    units: Mapping[tuple[int, str], str],
) -> None:
    """Move each metric's latest value forward to the newest new reading, never backwards.

    A unit given with the batch is kept even when its readings are older than
    the latest value; a metric given no unit keeps the one it has.
    """
    newest: dict[tuple[int, str], tuple[int, WireValue]] = {}
    for (device_id, metric, ts), value in new:
        current = newest.get((device_id, metric))
        if current is None or ts > current[0]:
            newest[(device_id, metric)] = (ts, value)
    _upsert(
        connection,
        table="telemetry_latest",
        columns=("device_id", "metric", "ts", "value", "text", "kind", "unit"),
        rows=[
            (
                device_id,
                metric,
                _stored_ts(ts),
                *value_to_columns(value),
                units.get((device_id, metric)),
            )
            for (device_id, metric), (ts, value) in sorted(newest.items())
        ],
        conflict=(
            "(device_id, metric) DO UPDATE SET "
            "ts = CASE WHEN excluded.ts > t.ts THEN excluded.ts ELSE t.ts END, "
            "value = CASE WHEN excluded.ts > t.ts THEN excluded.value ELSE t.value END, "
            "text = CASE WHEN excluded.ts > t.ts THEN excluded.text ELSE t.text END, "
            "kind = CASE WHEN excluded.ts > t.ts THEN excluded.kind ELSE t.kind END, "
            "unit = COALESCE(excluded.unit, t.unit) "
            "WHERE excluded.ts > t.ts OR excluded.unit IS NOT t.unit AND excluded.unit IS NOT NULL"
        ),
    )
