"""Read paths of the telemetry app: latest values, raw readings and time-bucketed series."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import CharField, Func, Q, QuerySet
from django.db.models.sql.compiler import SQLCompiler
from django.utils.dateparse import parse_datetime

from devices.models import Device
from devices.selectors import uid_is_valid
from telemetry.codec import format_ts
from telemetry.models import LatestValue, Reading, RollupHour, RollupMinute, ValueKind
from telemetry.series import (
    HOUR,
    MINUTE,
    Bucket,
    Partial,
    merge_buckets,
    raw_partial,
    rollup_width,
)
from telemetry.values import EPOCH, WireValue, columns_to_value, datetime_to_ms, ms_to_datetime

# metric -> (ts ms, value, unit or None)
LatestValues = dict[str, tuple[int, WireValue, str | None]]
# (ts, metric, value) of one raw reading.
ReadingRow = tuple[datetime, str, WireValue]
# The same with ts already formatted as RFC 3339 UTC text, for exports.
ReadingText = tuple[str, str, WireValue]
# (ts in epoch microseconds, metric): the position after which a page starts.
ReadingsPosition = tuple[int, str]

_ROLLUPS: Final[dict[int, type[RollupMinute] | type[RollupHour]]] = {
    MINUTE: RollupMinute,
    HOUR: RollupHour,
}
_MICROSECOND: Final = timedelta(microseconds=1)


def format_datetime(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with milliseconds and Z."""
    return format_ts(datetime_to_ms(moment))


def datetime_to_us(moment: datetime) -> int:
    """Return the epoch microseconds of an aware datetime, exactly."""
    return (moment - EPOCH) // _MICROSECOND


def us_to_datetime(ts_us: int) -> datetime:
    """Return the aware UTC datetime of an epoch-microseconds instant."""
    return EPOCH + timedelta(microseconds=ts_us)


class _Rfc3339(Func):
    """A timestamp as RFC 3339 UTC text with milliseconds, formatted by the database.

    Formatting a million timestamps in Python (and parsing them first) costs
    most of an export's time; the database does it for free while it reads.
    """

    output_field = CharField()

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        return self.as_sql(
            compiler,
            connection,
            template="to_char(%(expressions)s AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')',
            **extra,
        )

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        # Django's SQLite backend turns %% into %, so each of strftime's % is written %%%%.
        template = "strftime('%%%%Y-%%%%m-%%%%dT%%%%H:%%%%M:%%%%fZ', %(expressions)s)"
        return self.as_sql(compiler, connection, template=template, **extra)


def latest_for_device(*, device: Device) -> LatestValues:
    """Return the newest value of each metric of one device, with its unit."""
    rows = (
        LatestValue.objects.filter(device=device)
        .order_by("metric")
        .values_list("metric", "ts", "value", "text", "kind", "unit")
    )
    return {
        metric: (datetime_to_ms(ts), columns_to_value(value, text, kind), unit)
        for metric, ts, value, text, kind, unit in rows
    }


def latest_for_owner(
    *, owner: AbstractBaseUser, uids: Sequence[str] | None = None
) -> dict[str, LatestValues]:
    """Return the latest values of the user's devices (all, or those uids) in one query.

    Unknown uids and other users' devices are absent; an own device without
    readings maps to an empty object.
    """
    params: list[Any] = [owner.pk]
    where = "d.owner_id = %s"
    if uids is not None:
        wanted = sorted({uid for uid in uids if uid_is_valid(uid)})
        if not wanted:
            return {}
        where += " AND d.uid IN (" + ", ".join(["%s"] * len(wanted)) + ")"
        params.extend(wanted)
    # A LEFT JOIN, so devices that never reported are listed too; the models
    # cannot express it because LatestValue.device has no reverse accessor.
    # PostgreSQL hands back epoch milliseconds: parsing 3 000 timestamps into
    # datetimes cost a third of a fleet-wide answer (bench history row).
    ts = (
        "floor(extract(epoch FROM l.ts) * 1000)::bigint"
        if connection.vendor == "postgresql"
        else "l.ts"
    )
    sql = (
        f"SELECT d.uid, l.metric, {ts}, l.value, l.text, l.kind, l.unit "  # noqa: S608
        f"FROM {Device._meta.db_table} d "
        f"LEFT JOIN {LatestValue._meta.db_table} l ON l.device_id = d.id "
        f"WHERE {where} ORDER BY d.uid, l.metric"
    )
    result: dict[str, LatestValues] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for uid, metric, ts, value, text, kind, unit in cursor.fetchall():
            values = result.setdefault(uid, {})
            if metric is not None:
                values[metric] = (
                    ts if isinstance(ts, int) else datetime_to_ms(_aware(ts)),
                    columns_to_value(value, text, kind),
                    unit,
                )
    return result


def units_for_device(*, device: Device, metrics: Sequence[str]) -> dict[str, str]:
    """Return the stored unit of each of these metrics that has one."""
    return dict(
        LatestValue.objects.filter(device=device, metric__in=metrics, unit__isnull=False)
        .order_by()
        .values_list("metric", "unit")
    )


def _aware(value: datetime | str) -> datetime:
    # Raw SQL skips the ORM's converters: SQLite hands back naive UTC datetimes or text.
    moment = parse_datetime(value) if isinstance(value, str) else value
    assert moment is not None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _readings(
    *,
    device: Device,
    metric: str | None,
    start_ms: int,
    end_ms: int,
    after: ReadingsPosition | None,
    descending: bool,
) -> QuerySet[Reading, tuple[datetime, str, float | None, str | None, int]]:
    readings = Reading.objects.filter(
        device=device, ts__gte=ms_to_datetime(start_ms), ts__lt=ms_to_datetime(end_ms)
    )
    if metric is not None:
        readings = readings.filter(metric=metric)
    if after is not None:
        # Keyset pagination: (ts, metric) after the position in the walk's order, so
        # rows arriving between pages are neither skipped (if ahead) nor repeated.
        # The redundant bound on ts lets an index on ts start at the cursor.
        after_ts = us_to_datetime(after[0])
        if descending:
            readings = readings.filter(
                Q(ts__lt=after_ts) | Q(ts=after_ts, metric__lt=after[1]), ts__lte=after_ts
            )
        else:
            readings = readings.filter(
                Q(ts__gt=after_ts) | Q(ts=after_ts, metric__gt=after[1]), ts__gte=after_ts
            )
    order = ("-ts", "-metric") if descending else ("ts", "metric")
    return readings.order_by(*order).values_list("ts", "metric", "value", "text", "kind")


def readings_page(
    *,
    device: Device,
    metric: str | None,
    start_ms: int,
    end_ms: int,
    after: ReadingsPosition | None,
    limit: int,
    descending: bool = False,
) -> list[ReadingRow]:
    """Return up to `limit` raw readings in [start, end) after a position, by (ts, metric).

    Ascending by default; `descending` walks from the newest.
    """
    rows = _readings(
        device=device,
        metric=metric,
        start_ms=start_ms,
        end_ms=end_ms,
        after=after,
        descending=descending,
    )
    return [
        (ts, name, columns_to_value(value, text, kind))
        for ts, name, value, text, kind in rows[:limit]
    ]


def readings_stream(
    *,
    device: Device,
    metric: str | None,
    start_ms: int,
    end_ms: int,
    after: ReadingsPosition | None = None,
    descending: bool = False,
    chunk_size: int = 2000,
) -> Iterator[ReadingText]:
    """Yield every raw reading in [start, end) by (ts, metric), ts as RFC 3339 text.

    One chunk is in memory at a time: on PostgreSQL the rows come through a
    server-side cursor, so memory stays flat however many there are.
    """
    rows = (
        _readings(
            device=device,
            metric=metric,
            start_ms=start_ms,
            end_ms=end_ms,
            after=after,
            descending=descending,
        )
        .annotate(ts_text=_Rfc3339("ts"))
        .values_list("ts_text", "metric", "value", "text", "kind")
    )
    for ts, name, value, text, kind in rows.iterator(chunk_size=chunk_size):
        yield ts, name, columns_to_value(value, text, kind)


def series_for_device(
    *, device: Device, metrics: Sequence[str], bounds: Sequence[int]
) -> dict[str, list[Bucket]]:
    """Return the non-empty buckets [b_i, b_i+1) of each metric, ordered by time.

    Reads the hourly rollups when every bound is a whole hour, the minute
    rollups when every bound is a whole minute, and raw numeric readings
    otherwise (strings are left out; booleans count as 0 and 1). Each bucket
    aggregates everything stored inside it, even where it reaches beyond the
    range asked for.
    """
    width = rollup_width(bounds)
    if connection.vendor == "postgresql":
        return _series_in_postgresql(device=device, metrics=metrics, bounds=bounds, width=width)
    start, end = ms_to_datetime(bounds[0]), ms_to_datetime(bounds[-1])
    partials: Iterator[tuple[str, Partial]]
    if width is None:
        raw = (
            Reading.objects.filter(device=device, metric__in=metrics, ts__gte=start, ts__lt=end)
            .exclude(kind=ValueKind.STR)
            .order_by("metric", "ts")
            .values_list("metric", "ts", "value")
        )
        partials = (
            (metric, raw_partial(datetime_to_ms(ts), value))
            for metric, ts, value in raw.iterator(chunk_size=5000)
        )
    else:
        rollups = (
            _ROLLUPS[width]
            .objects.filter(device=device, metric__in=metrics, bucket__gte=start, bucket__lt=end)
            .order_by("metric", "bucket")
            .values_list(
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
            )
        )
        partials = (_rollup_partial(*row) for row in rollups.iterator(chunk_size=5000))
    result: dict[str, list[Bucket]] = {metric: [] for metric in metrics}
    for metric, group in itertools.groupby(partials, key=lambda item: item[0]):
        result[metric] = list(merge_buckets((partial for _, partial in group), bounds=bounds))
    return result


# One row per (metric, bucket): PostgreSQL's width_bucket finds each row's bucket among
# the bounds by binary search, so only the buckets travel to Python.
_SERIES_SQL = """
SELECT metric, width_bucket({ts}, %(bounds)s::timestamptz[]) AS i, ({count})::bigint, {total},
       min({low}), max({high}),
       (array_agg({first} ORDER BY {first_ts}))[1],
       (extract(epoch FROM min({first_ts})) * 1000)::bigint,
       (array_agg({last} ORDER BY {last_ts} DESC))[1],
       (extract(epoch FROM max({last_ts})) * 1000)::bigint
FROM {table}
WHERE device_id = %(device)s AND metric = ANY(%(metrics)s)
  AND {ts} >= %(start)s AND {ts} < %(end)s {only_numbers}
GROUP BY metric, i ORDER BY metric, i
"""
_SERIES_RAW = _SERIES_SQL.format(
    ts="ts",
    count="count(*)",
    total="sum(value)",
    low="value",
    high="value",
    first="value",
    first_ts="ts",
    last="value",
    last_ts="ts",
    table=Reading._meta.db_table,
    only_numbers=f"AND kind <> {ValueKind.STR.value}",
)
_SERIES_ROLLUPS = {
    width: _SERIES_SQL.format(
        ts="bucket",
        count="sum(count)",
        total="sum(sum)",
        low="min",
        high="max",
        first="first",
        first_ts="first_ts",
        last="last",
        last_ts="last_ts",
        table=model._meta.db_table,
        only_numbers="",
    )
    for width, model in _ROLLUPS.items()
}


def _series_in_postgresql(
    *, device: Device, metrics: Sequence[str], bounds: Sequence[int], width: int | None
) -> dict[str, list[Bucket]]:
    """Aggregate the buckets in the database: the cost is the rows read, not Python per row."""
    moments = [ms_to_datetime(bound) for bound in bounds]
    params = {
        "bounds": moments,
        "device": device.pk,
        "metrics": list(metrics),
        "start": moments[0],
        "end": moments[-1],
    }
    result: dict[str, list[Bucket]] = {metric: [] for metric in metrics}
    with connection.cursor() as cursor:
        cursor.execute(_SERIES_RAW if width is None else _SERIES_ROLLUPS[width], params)
        for metric, index, count, total, low, high, first, first_ts, last, last_ts in cursor:
            result[metric].append(
                Bucket(bounds[index - 1], count, total, low, high, first, first_ts, last, last_ts)
            )
    return result


def _rollup_partial(
    metric: str,
    bucket: datetime,
    count: int,
    total: float,
    low: float,
    high: float,
    first: float,
    first_ts: datetime,
    last: float,
    last_ts: datetime,
) -> tuple[str, Partial]:
    start, first_ms, last_ms = (
        datetime_to_ms(bucket),
        datetime_to_ms(first_ts),
        datetime_to_ms(last_ts),
    )
    return metric, (start, count, total, low, high, first, first_ms, last, last_ms)
