"""Write paths of the telemetry app: store one ingest batch in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Q

from devices.models import Device
from telemetry.bulk import bulk_insert, float_add, scalar_max, scalar_min
from telemetry.values import WireValue, ms_to_datetime, value_to_columns

logger = logging.getLogger(__name__)

# (device uid, metric, ts in epoch ms, value) as the bridge sends them.
WireReading = Sequence[Any]

ROLLUP_TABLES = (("telemetry_rollup_1m", 60_000), ("telemetry_rollup_1h", 3_600_000))


@dataclass(slots=True)
class StoredBatch:
    """What one batch changed: the readings that were new, grouped for fan-out."""

    # owner id -> device uid -> [(ts ms, metric, value)], in batch order.
    new_by_owner: dict[int, dict[str, list[tuple[int, str, WireValue]]]] = field(
        default_factory=dict
    )
    inserted: int = 0
    duplicates: int = 0
    # uid -> number of readings ignored because the device is unknown or disabled.
    unknown: dict[str, int] = field(default_factory=dict)


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


def readings_store_batch(*, readings: Sequence[WireReading], received_at: datetime) -> StoredBatch:
    """Store a batch once: dedup on (device, metric, ts), then rollups, latest and last_seen."""
    result = StoredBatch()
    uids = {reading[0] for reading in readings}
    devices = {
        uid: (device_id, owner_id)
        for uid, device_id, owner_id in Device.objects.filter(
            uid__in=uids, active=True
        ).values_list("uid", "id", "owner_id")
    }
    adapt = connection.ops.adapt_datetimefield_value
    # Keyed by (device id, metric, adapted ts) so RETURNING rows map back to values;
    # a reading repeated inside the batch keeps its first occurrence.
    pending: dict[tuple[int, str, Any], tuple[str, int, WireValue]] = {}
    for uid, metric, ts, value in readings:
        ids = devices.get(uid)
        if ids is None:
            result.unknown[uid] = result.unknown.get(uid, 0) + 1
            continue
        key = (ids[0], metric, adapt(ms_to_datetime(ts)))
        if key in pending:
            result.duplicates += 1
            continue
        pending[key] = (uid, ts, value)

    with transaction.atomic():
        rows = [
            (*key, *value_to_columns(pending[key][2])) for key in sorted(pending, key=_lock_order)
        ]
        returned = bulk_insert(
            connection,
            table="telemetry_reading",
            columns=("device_id", "metric", "ts", "value", "text", "kind"),
            pg_types=("bigint", "text", "timestamptz", "float8", "text", "int2"),
            rows=rows,
            conflict="DO NOTHING",
            returning="device_id, metric, ts",
        )
        new = [
            (device_id, metric, pending[(device_id, metric, _returned_ts(ts, adapt))])
            for device_id, metric, ts in returned
        ]
        result.inserted = len(new)
        result.duplicates += len(pending) - len(new)
        _rollups_add(new)
        _latest_update(new)
        # A device that sent only duplicates was still heard from.
        seen = sorted(device_id for device_id, _ in devices.values())
        if seen:
            Device.objects.filter(
                Q(last_seen__isnull=True) | Q(last_seen__lt=received_at), id__in=seen
            ).update(last_seen=received_at, online=True)

    owners = {device_id: owner_id for device_id, owner_id in devices.values()}
    for device_id, metric, (uid, ts, value) in sorted(new, key=lambda item: item[2][1]):
        by_device = result.new_by_owner.setdefault(owners[device_id], {})
        by_device.setdefault(uid, []).append((ts, metric, value))
    return result


def _lock_order(key: tuple[int, str, Any]) -> tuple[int, str, str]:
    # Every writer touches rows in the same order, so concurrent batches cannot deadlock.
    return key[0], key[1], str(key[2])


def _returned_ts(value: Any, adapt: Any) -> Any:
    # PostgreSQL returns datetimes, SQLite the text it stored; both compare with `adapt`'s output.
    return value if isinstance(value, str) else adapt(value)


def _rollups_add(new: list[tuple[int, str, tuple[str, int, WireValue]]]) -> None:
    """Fold newly inserted numeric readings into the 1-minute and 1-hour rollups."""
    least, greatest = scalar_min(connection), scalar_max(connection)
    adapt = connection.ops.adapt_datetimefield_value
    for table, width in ROLLUP_TABLES:
        buckets: dict[tuple[int, str, int], _Aggregate] = {}
        for device_id, metric, (_, ts, value) in new:
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
                adapt(ms_to_datetime(bucket)),
                a.count,
                a.total,
                a.low,
                a.high,
                a.first,
                adapt(ms_to_datetime(a.first_ts)),
                a.last,
                adapt(ms_to_datetime(a.last_ts)),
            )
            for (device_id, metric, bucket), a in sorted(buckets.items())
        ]
        bulk_insert(
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
            pg_types=(
                "bigint",
                "text",
                "timestamptz",
                "bigint",
                "float8",
                "float8",
                "float8",
                "float8",
                "timestamptz",
                "float8",
                "timestamptz",
            ),
            rows=rows,
            conflict=(
                "(device_id, metric, bucket) DO UPDATE SET "
                "count = t.count + excluded.count, "
                f"sum = {float_add(connection, 't.sum', 'excluded.sum')}, "
                f"min = {least}(t.min, excluded.min), max = {greatest}(t.max, excluded.max), "
                "first = CASE WHEN excluded.first_ts < t.first_ts "
                "THEN excluded.first ELSE t.first END, "
                f"first_ts = {least}(t.first_ts, excluded.first_ts), "
                "last = CASE WHEN excluded.last_ts > t.last_ts "
                "THEN excluded.last ELSE t.last END, "
                f"last_ts = {greatest}(t.last_ts, excluded.last_ts)"
            ),
        )


def _latest_update(new: list[tuple[int, str, tuple[str, int, WireValue]]]) -> None:
    """Move each metric's latest value forward to the newest new reading, never backwards."""
    newest: dict[tuple[int, str], tuple[int, WireValue]] = {}
    for device_id, metric, (_, ts, value) in new:
        current = newest.get((device_id, metric))
        if current is None or ts > current[0]:
            newest[(device_id, metric)] = (ts, value)
    adapt = connection.ops.adapt_datetimefield_value
    rows = [
        (device_id, metric, adapt(ms_to_datetime(ts)), *value_to_columns(value))
        for (device_id, metric), (ts, value) in sorted(newest.items())
    ]
    bulk_insert(
        connection,
        table="telemetry_latest",
        columns=("device_id", "metric", "ts", "value", "text", "kind"),
        pg_types=("bigint", "text", "timestamptz", "float8", "text", "int2"),
        rows=rows,
        conflict=(
            "(device_id, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value, "
            "text = excluded.text, kind = excluded.kind WHERE excluded.ts > t.ts"
        ),
    )
