"""Read paths of the telemetry app: latest values, raw readings and time-bucketed series."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from django.contrib.auth.models import User
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BigIntegerField, CharField, Func, Q, QuerySet
from django.db.models.sql.compiler import SQLCompiler
from django.utils.dateparse import parse_datetime

from devices.models import Device
from devices.selectors import uid_is_valid
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

if TYPE_CHECKING:
    # django-stubs' name for what as_sql returns; it exists in the stubs only.
    from django.db.models.sql.compiler import _AsSqlType

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
    ) -> _AsSqlType:
        return self.as_sql(
            compiler,
            connection,
            template="to_char(%(expressions)s AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')',
            **extra,
        )

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> _AsSqlType:
        # Django's SQLite backend turns %% into %, so each of strftime's % is written %%%%.
        template = "strftime('%%%%Y-%%%%m-%%%%dT%%%%H:%%%%M:%%%%fZ', %(expressions)s)"
        return self.as_sql(compiler, connection, template=template, **extra)


class _EpochMs(Func):
    """A SQLite timestamp as integer epoch milliseconds, computed by the database.

    Parsing each timestamp into a datetime (Django's converter) cost two thirds of
    a series request read from rollups in SQLite (bench/hardening.py).
    """

    output_field = BigIntegerField()
    # SQLite keeps a time as integer milliseconds since the Julian epoch and julianday()
    # divides them by a day: the error is far below half a millisecond, so ROUND is exact.
    template = "CAST(ROUND((julianday(%(expressions)s) - 2440587.5) * 86400000.0) AS INTEGER)"


def _plain_rows(query: QuerySet[Any, Any], chunk_size: int = 5000) -> Iterator[tuple[Any, ...]]:
    """Yield the rows of a values_list query as the database gives them, in chunks.

    For queries whose columns need no conversion: the ORM's per-row converters
    were a third of a series request's time in SQLite.
    """
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(chunk_size):
            yield from rows


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


def _latest_for_owner_sql(owner: User, uids: Sequence[str] | None) -> tuple[str, list[Any]] | None:
    """Return the query of the owner's devices' latest values, by uid and metric; None for none."""
    params: list[Any] = [owner.pk]
    where = "d.owner_id = %s"
    if uids is not None:
        wanted = sorted({uid for uid in uids if uid_is_valid(uid)})
        if not wanted:
            return None
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
    return sql, params


def _latest_grouped(cursor: Any, chunk_size: int) -> Iterator[tuple[str, LatestValues]]:
    """Group the executed latest-values query's rows into (uid, values), fetching in chunks."""
    current: str | None = None
    values: LatestValues = {}
    while rows := cursor.fetchmany(chunk_size):
        for uid, metric, ts, value, text, kind, unit in rows:
            if uid != current:
                if current is not None:
                    yield current, values
                current, values = uid, {}
            if metric is not None:
                values[metric] = (
                    ts if isinstance(ts, int) else datetime_to_ms(_aware(ts)),
                    columns_to_value(value, text, kind),
                    unit,
                )
    if current is not None:
        yield current, values


def latest_for_owner_iter(
    *, owner: User, uids: Sequence[str] | None = None, chunk_size: int = 2000
) -> Iterator[tuple[str, LatestValues]]:
    """Yield (uid, latest values) of the user's devices (all, or those uids), by uid.

    Unknown uids and other users' devices are absent; an own device without
    readings has empty values. One chunk of rows is in memory at a time: on
    PostgreSQL they come through a server-side cursor, so a fleet of any size
    streams in constant memory.
    """
    query = _latest_for_owner_sql(owner, uids)
    if query is None:
        return
    with connection.chunked_cursor() as cursor:
        cursor.execute(*query)
        yield from _latest_grouped(cursor, chunk_size)


def latest_for_owner(*, owner: User, uids: Sequence[str] | None = None) -> dict[str, LatestValues]:
    """Return the latest values of the user's devices (all, or those uids) in one query.

    Unknown uids and other users' devices are absent; an own device without
    readings maps to an empty object.
    """
    query = _latest_for_owner_sql(owner, uids)
    if query is None:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(*query)
        return dict(_latest_grouped(cursor, 10_000))


def units_for_device(*, device: Device, metrics: Sequence[str]) -> dict[str, str]:
    """Return the stored unit of each of these metrics that has one."""
    rows = (
        LatestValue.objects.filter(device=device, metric__in=metrics, unit__isnull=False)
        .order_by()
        .values_list("metric", "unit")
    )
    # unit__isnull=False: no None among them, which the stubs cannot see.
    return cast("dict[str, str]", dict(rows))


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
            .annotate(ts_ms=_EpochMs("ts"))
            .values_list("metric", "ts_ms", "value")
        )
        partials = (
            (metric, raw_partial(ts_ms, value)) for metric, ts_ms, value in _plain_rows(raw)
        )
    else:
        rollups = (
            _ROLLUPS[width]
            .objects.filter(device=device, metric__in=metrics, bucket__gte=start, bucket__lt=end)
            .order_by("metric", "bucket")
            .annotate(
                start_ms=_EpochMs("bucket"),
                first_ms=_EpochMs("first_ts"),
                last_ms=_EpochMs("last_ts"),
            )
            .values_list(
                "metric",
                "start_ms",
                "count",
                "sum",
                "min",
                "max",
                "first",
                "first_ms",
                "last",
                "last_ms",
            )
        )
        partials = (
            (metric, (start, count, total, low, high, first, first_ms, last, last_ms))
            for metric, start, count, total, low, high, first, first_ms, last, last_ms in (
                _plain_rows(rollups)
            )
        )
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
    params: dict[str, Any] = {
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
