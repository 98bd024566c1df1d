"""Query parameters and JSON shapes of the history endpoints."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, tzinfo
from typing import Any, Final

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.conf import hub_settings
from core.moments import format_moment
from telemetry.codec import METRIC_PATTERN, format_ts
from telemetry.selectors import LatestValues, ReadingRow, ReadingsPosition
from telemetry.series import (
    DEFAULT_POINTS,
    DEFAULT_RANGE_MS,
    MAX_TS_MS,
    MIN_TS_MS,
    Bucket,
    Interval,
    bucket_bounds,
    parse_instant,
    parse_interval,
    parse_min_interval,
    parse_zone,
    pick_interval,
)

MAX_READINGS_LIMIT: Final = 10_000
DEFAULT_READINGS_LIMIT: Final = 1000
MAX_SERIES_METRICS: Final = 50
MAX_LATEST_DEVICES: Final = 1000
_MAX_CURSOR_LENGTH: Final = 512

_metric_ok: Final = re.compile(METRIC_PATTERN).fullmatch
_METRIC_MESSAGE: Final = (
    "must be 1 to 128 letters, digits, _ . : / or -, starting with a letter or digit"
)


def query_data(query: Mapping[str, Any]) -> dict[str, str]:
    """Return the query parameters as a plain dict: the last of repeated values, blanks dropped."""
    # A blank parameter (as an HTML form sends it) means "not given".
    return {key: value for key in query if (value := query.get(key)) is not None and value != ""}


def encode_cursor(position: ReadingsPosition) -> str:
    """Return the opaque cursor of a position in the (ts, metric) order."""
    raw = json.dumps(list(position), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> ReadingsPosition:
    """Return the position an opaque cursor encodes; raise ValueError if it is not one of ours."""
    if len(cursor) > _MAX_CURSOR_LENGTH:
        raise ValueError("too long")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        position = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ValueError("not a cursor") from error
    if not (
        isinstance(position, list)
        and len(position) == 2
        and type(position[0]) is int
        and MIN_TS_MS * 1000 <= position[0] <= MAX_TS_MS * 1000 + 999
        and isinstance(position[1], str)
        and _metric_ok(position[1])
    ):
        raise ValueError("not a cursor")
    return position[0], position[1]


class InstantField(serializers.Field[Any, Any, Any, Any]):
    """An instant given as RFC 3339 with a zone or as integer epoch milliseconds."""

    def to_internal_value(self, data: Any) -> int:
        try:
            return parse_instant(str(data))
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None

    def to_representation(self, value: int) -> str:
        return format_ts(value)


class RangeQuerySerializer(serializers.Serializer[Any]):
    """`start` and `end`; end defaults to now (context `now_ms`), start to an hour before end."""

    start = InstantField(required=False)
    end = InstantField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("end", self.context["now_ms"])
        start = attrs.get("start", max(end - DEFAULT_RANGE_MS, MIN_TS_MS))
        if start >= end:
            raise serializers.ValidationError({"start": ["must be before end"]})
        attrs["start"], attrs["end"] = start, end
        return attrs


def validate_metric(metric: str) -> str:
    """Return a metric name, or raise a ValidationError if it cannot be one."""
    if not _metric_ok(metric):
        raise serializers.ValidationError(_METRIC_MESSAGE)
    return metric


class ReadingsQuerySerializer(RangeQuerySerializer):
    """Parameters of GET /devices/{uid}/readings/."""

    metric = serializers.CharField(required=False, trim_whitespace=False, max_length=128)
    limit = serializers.IntegerField(
        required=False, default=DEFAULT_READINGS_LIMIT, min_value=1, max_value=MAX_READINGS_LIMIT
    )
    cursor = serializers.CharField(required=False, trim_whitespace=False)
    order = serializers.ChoiceField(required=False, default="asc", choices=["asc", "desc"])

    def validate_metric(self, metric: str) -> str:
        """Check the metric name's shape."""
        return validate_metric(metric)

    def validate_cursor(self, cursor: str) -> ReadingsPosition:
        """Decode the cursor a previous page handed out."""
        try:
            return decode_cursor(cursor)
        except ValueError:
            message = "invalid cursor; use the `next` link as given"
            raise serializers.ValidationError(message) from None


class SeriesQuerySerializer(RangeQuerySerializer):
    """Parameters of GET /devices/{uid}/series/; they become `interval`, `zone` and `bounds`."""

    metric = serializers.CharField(trim_whitespace=False, max_length=MAX_SERIES_METRICS * 129)
    interval = serializers.CharField(required=False, trim_whitespace=False, max_length=32)
    points = serializers.IntegerField(required=False, min_value=1)
    min_interval = serializers.CharField(required=False, trim_whitespace=False, max_length=32)
    tz = serializers.CharField(required=False, trim_whitespace=False, max_length=64)
    fill = serializers.ChoiceField(required=False, choices=["null"])

    def validate_metric(self, metric: str) -> list[str]:
        """Split `a,b` into distinct valid names, keeping their order."""
        names = metric.split(",")
        if len(names) > MAX_SERIES_METRICS:
            raise serializers.ValidationError(f"at most {MAX_SERIES_METRICS} metrics")
        for name in names:
            validate_metric(name)
        return list(dict.fromkeys(names))

    def validate_points(self, points: int) -> int:
        """Keep `points` within the request's bucket limit."""
        limit = hub_settings.MAX_SERIES_BUCKETS
        if points > limit:
            raise serializers.ValidationError(
                f"at most {limit} (HUB_MAX_SERIES_BUCKETS, buckets per request)"
            )
        return points

    def validate_interval(self, interval: str) -> Interval:
        """Parse an interval like 15m, 1d, 1w or 1mo."""
        try:
            return parse_interval(interval)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None

    def validate_min_interval(self, text: str) -> int:
        """Parse a minimum bucket width (Grafana's $__interval or $__interval_ms)."""
        try:
            return parse_min_interval(text)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None

    def validate_tz(self, tz: str) -> tzinfo:
        """Look up an IANA time zone name."""
        try:
            return parse_zone(tz)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        start, end = attrs["start"], attrs["end"]
        zone = attrs.get("tz", UTC)
        interval, points = attrs.get("interval"), attrs.get("points")
        at_least = attrs.get("min_interval")
        given = [name for name in ("interval", "points", "min_interval") if name in attrs]
        if len(given) > 1:
            message = "give one of interval, points or min_interval"
            raise serializers.ValidationError({name: [message] for name in given})
        # Every metric gets the same buckets: the request's limit is shared between them.
        limit = hub_settings.MAX_SERIES_BUCKETS
        per_metric = limit // len(attrs["metric"])
        try:
            if interval is None:
                wanted = min(DEFAULT_POINTS if points is None else points, per_metric)
                # min_interval: the smallest ladder width at least that wide, within the limit.
                if at_least is not None:
                    wanted = per_metric
                interval = pick_interval(
                    start_ms=start, end_ms=end, points=wanted, zone=zone, at_least_ms=at_least or 0
                )
                if interval is None:
                    raise serializers.ValidationError(
                        {
                            "min_interval" if at_least is not None else "points": [
                                f"no interval up to 1mo gives at most {wanted} points per metric "
                                "over this range; ask for more points, fewer metrics or a "
                                "shorter range"
                            ]
                        }
                    )
            bounds = bucket_bounds(
                start_ms=start, end_ms=end, interval=interval, zone=zone, limit=per_metric
            )
        except ValueError as error:
            raise serializers.ValidationError(
                {"start": [str(error)], "end": [str(error)]}
            ) from None
        if bounds is None:
            metrics = len(attrs["metric"])
            across = f" across its {metrics} metrics" if metrics > 1 else ""
            raise serializers.ValidationError(
                {
                    "interval": [
                        f"gives more than {limit} buckets{across} over this range: a series "
                        f"request returns at most {limit} (HUB_MAX_SERIES_BUCKETS); use a wider "
                        "interval or a shorter range, or points=N to let the hub pick the "
                        "interval"
                    ]
                }
            )
        attrs["interval"], attrs["zone"], attrs["bounds"] = interval, zone, bounds
        attrs["multiple"] = "," in self.initial_data["metric"]
        return attrs


class LatestQuerySerializer(serializers.Serializer[Any]):
    """Parameters of GET /latest/: `devices=a,b`, default all own devices."""

    devices = serializers.CharField(
        required=False, trim_whitespace=False, max_length=MAX_LATEST_DEVICES * 65
    )

    def validate_devices(self, devices: str) -> list[str] | None:
        """Split the uid list (None when it names none); uids that cannot exist are not found."""
        uids = [uid for uid in devices.split(",") if uid]
        if len(uids) > MAX_LATEST_DEVICES:
            raise serializers.ValidationError(f"at most {MAX_LATEST_DEVICES} devices")
        return uids or None


def latest_json(values: LatestValues) -> dict[str, dict[str, Any]]:
    """Shape one device's latest values as {metric: {ts, value, unit}}."""
    return {
        metric: {"ts": format_ts(ts), "value": value, "unit": unit}
        for metric, (ts, value, unit) in values.items()
    }


def reading_json(row: ReadingRow) -> dict[str, Any]:
    """Shape one raw reading as {ts, metric, value}."""
    ts, metric, value = row
    return {"ts": format_moment(ts), "metric": metric, "value": value}


def _finite(number: float) -> float | None:
    # A sum of huge values can overflow to inf, which JSON cannot carry.
    return number if math.isfinite(number) else None


_NO_AGGREGATES: Final[dict[str, None]] = dict.fromkeys(("avg", "min", "max", "first", "last"))


def series_json(
    *,
    metric: str,
    interval: Interval,
    unit: str | None,
    buckets: list[Bucket],
    bounds: list[int] | None = None,
) -> dict[str, Any]:
    """Shape one metric's buckets as {metric, interval, unit, points}.

    With `bounds`, every bucket is a point: the empty ones with count 0 and nulls.
    """
    points = [
        {
            "ts": format_ts(bucket.ts),
            "count": bucket.count,
            "avg": _finite(bucket.avg),
            "min": bucket.low,
            "max": bucket.high,
            "first": bucket.first,
            "last": bucket.last,
        }
        for bucket in buckets
    ]
    if bounds is not None:
        by_ts = {point["ts"]: point for point in points}
        points = [
            by_ts.get(ts) or {"ts": ts, "count": 0, **_NO_AGGREGATES}
            for ts in (format_ts(bound) for bound in bounds[:-1])
        ]
    return {"metric": metric, "interval": interval.text, "unit": unit, "points": points}


# Shapes for the OpenAPI document only: the views render plain dicts.


WIRE_VALUE_SCHEMA: Final[dict[str, Any]] = {
    "oneOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}],
    "description": "The value as the device sent it: a number, a boolean or a string.",
}
LATEST_VALUE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "The newest reading of one metric.",
    "properties": {
        "ts": {
            "type": "string",
            "format": "date-time",
            "description": "When the device measured it (RFC 3339 UTC).",
        },
        "value": WIRE_VALUE_SCHEMA,
        "unit": {
            "type": "string",
            "nullable": True,
            "description": "The unit the device last gave (SenML), or null.",
        },
    },
    "required": ["ts", "value", "unit"],
}
# {metric: latest value}
DEVICE_LATEST_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": LATEST_VALUE_SCHEMA,
}
# {uid: {metric: latest value}}
FLEET_LATEST_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": DEVICE_LATEST_SCHEMA,
}


@extend_schema_field(WIRE_VALUE_SCHEMA)
class WireValueField(serializers.Field[Any, Any, Any, Any]):
    """A reading's value in its sent JSON type."""


class ReadingSerializer(serializers.Serializer[Any]):
    """One raw reading."""

    ts = serializers.DateTimeField(help_text="Device time, RFC 3339 UTC with milliseconds.")
    metric = serializers.CharField()
    value = WireValueField()


class ReadingsPageSerializer(serializers.Serializer[Any]):
    """One page of raw readings."""

    next = serializers.URLField(
        allow_null=True, help_text="The next page (range and order pinned), or null at the end."
    )
    results = ReadingSerializer(many=True)


class SeriesPointSerializer(serializers.Serializer[Any]):
    """The aggregate of one bucket; with fill=null an empty bucket has count 0 and nulls."""

    ts = serializers.DateTimeField(help_text="Start of the bucket.")
    count = serializers.IntegerField(min_value=0)
    avg = serializers.FloatField(allow_null=True)
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)
    first = serializers.FloatField(allow_null=True, help_text="The value with the earliest ts.")
    last = serializers.FloatField(allow_null=True, help_text="The value with the latest ts.")


class SeriesSerializer(serializers.Serializer[Any]):
    """The buckets of one metric."""

    metric = serializers.CharField()
    interval = serializers.CharField(help_text="The bucket width used, like 15m, 1d, 1w, 1mo.")
    unit = serializers.CharField(allow_null=True, help_text="The metric's unit, or null.")
    points = SeriesPointSerializer(many=True)


class SeriesListSerializer(serializers.Serializer[Any]):
    """The buckets of several metrics, in the order asked."""

    series = SeriesSerializer(many=True)
