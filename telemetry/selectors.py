"""Read paths of the telemetry app: latest values, raw readings and time-bucketed series."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Q, QuerySet
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

# metric -> (ts ms, value)
LatestValues = dict[str, tuple[int, WireValue]]
# (ts, metric, value) of one raw reading.
ReadingRow = tuple[datetime, str, WireValue]
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


def latest_for_device(*, device: Device) -> LatestValues:
    """Return the newest value of each metric of one device."""
    rows = (
        LatestValue.objects.filter(device=device)
        .order_by("metric")
        .values_list("metric", "ts", "value", "text", "kind")
    )
    return {
        metric: (datetime_to_ms(ts), columns_to_value(value, text, kind))
        for metric, ts, value, text, kind in rows
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
    sql = (
        "SELECT d.uid, l.metric, l.ts, l.value, l.text, l.kind "  # noqa: S608 - only our identifiers
        f"FROM {Device._meta.db_table} d "
        f"LEFT JOIN {LatestValue._meta.db_table} l ON l.device_id = d.id "
        f"WHERE {where} ORDER BY d.uid, l.metric"
    )
    result: dict[str, LatestValues] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for uid, metric, ts, value, text, kind in cursor.fetchall():
            values = result.setdefault(uid, {})
            if metric is not None:
                values[metric] = (datetime_to_ms(_aware(ts)), columns_to_value(value, text, kind))
    return result


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
) -> QuerySet[Reading, tuple[datetime, str, float | None, str | None, int]]:
    readings = Reading.objects.filter(
        device=device, ts__gte=ms_to_datetime(start_ms), ts__lt=ms_to_datetime(end_ms)
    )
    if metric is not None:
        readings = readings.filter(metric=metric)
    if after is not None:
        # Keyset pagination: (ts, metric) > after, so rows arriving between pages
        # are neither skipped (if later) nor repeated. The redundant ts >= bound
        # lets an index on ts start at the cursor instead of filtering up to it.
        after_ts = us_to_datetime(after[0])
        readings = readings.filter(
            Q(ts__gt=after_ts) | Q(ts=after_ts, metric__gt=after[1]), ts__gte=after_ts
        )
    return readings.order_by("ts", "metric").values_list("ts", "metric", "value", "text", "kind")


def readings_page(
    *,
    device: Device,
    metric: str | None,
    start_ms: int,
    end_ms: int,
    after: ReadingsPosition | None,
    limit: int,
) -> list[ReadingRow]:
    """Return up to `limit` raw readings in [start, end) after a position, by (ts, metric)."""
    rows = _readings(device=device, metric=metric, start_ms=start_ms, end_ms=end_ms, after=after)
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
    chunk_size: int = 2000,
) -> Iterator[ReadingRow]:
    """Yield every raw reading in [start, end) by (ts, metric), holding one chunk in memory."""
    rows = _readings(device=device, metric=metric, start_ms=start_ms, end_ms=end_ms, after=after)
    for ts, name, value, text, kind in rows.iterator(chunk_size=chunk_size):
        yield ts, name, columns_to_value(value, text, kind)


def series_for_device(
    *,
    device: Device,
    metrics: Sequence[str],
    start_ms: int,
    end_ms: int,
    interval_ms: int,
) -> dict[str, list[Bucket]]:
    """Return the non-empty interval buckets of each metric, ordered by time.

    Intervals that are a multiple of 1 h read the hourly rollups, multiples of
    1 min the minute rollups, shorter ones the raw numeric readings (strings are
    left out; booleans count as 0 and 1). A rollup row is included whole when
    its bucket starts in [start, end), so with an unaligned range the first and
    last points may cover up to one rollup width outside it; raw readings are
    included when their own ts is in [start, end).
    """
    width = rollup_width(interval_ms)
    start, end = ms_to_datetime(start_ms), ms_to_datetime(end_ms)
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
        result[metric] = list(
            merge_buckets((partial for _, partial in group), interval_ms=interval_ms)
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
