"""REST endpoints for history: latest values, raw readings (JSON pages or CSV) and series."""

from __future__ import annotations

import csv
import io
from collections.abc import Generator, Iterator, Mapping
from typing import Any

from django.http import HttpResponseBase, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.requests import AuthenticatedRequest
from core.streaming import json_object_chunks, streaming_response
from devices.access import visible_uids
from devices.serializers import error_responses
from devices.views import UID_PARAMETER, FormatParamNegotiation, own_device
from telemetry.selectors import (
    ReadingText,
    datetime_to_us,
    latest_for_device,
    latest_for_owner_iter,
    readings_page,
    readings_stream,
    series_for_device,
    units_for_device,
)
from telemetry.serializers import (
    DEFAULT_READINGS_LIMIT,
    DEVICE_LATEST_SCHEMA,
    FLEET_LATEST_SCHEMA,
    MAX_LATEST_DEVICES,
    MAX_READINGS_LIMIT,
    MAX_SERIES_METRICS,
    LatestQuerySerializer,
    ReadingsPageSerializer,
    ReadingsQuerySerializer,
    SeriesListSerializer,
    SeriesQuerySerializer,
    SeriesSerializer,
    encode_cursor,
    latest_json,
    query_data,
    reading_json,
    series_json,
)
from telemetry.series import DEFAULT_POINTS
from telemetry.slots import in_history_slots, series_slot
from telemetry.values import WireValue, datetime_to_ms

CSV_ROWS_PER_CHUNK = 2000


class CSVRenderer(BaseRenderer):
    """Lets `?format=csv` and `Accept: text/csv` select the streamed CSV export."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        # Readings are streamed by the view, and errors are switched to JSON in
        # finalize_response, so this only runs if something else slips through.
        body: bytes = JSONRenderer().render(data)
        return body


class HistoryView(APIView):
    """Base of the history endpoints: unknown formats are a 400, errors are always JSON."""

    content_negotiation_class = FormatParamNegotiation

    # DRF finalizes any HttpResponseBase (the streamed CSV and JSON bodies);
    # djangorestframework-stubs type it for Response only.
    def finalize_response(  # type: ignore[override]
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if isinstance(response, Response) and isinstance(
            getattr(request, "accepted_renderer", None), CSVRenderer
        ):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)  # type: ignore[arg-type]


def now_ms() -> int:
    """Return the current time in epoch milliseconds."""
    return datetime_to_ms(timezone.now())


# OpenAPI: the parameters and responses the views below document.

START = OpenApiParameter(
    "start",
    str,
    description="Range start (inclusive): RFC 3339 with a zone or epoch milliseconds. "
    "Default: one hour before `end`.",
    examples=[
        OpenApiExample("RFC 3339", value="2026-11-26T06:00:00Z"),
        OpenApiExample("epoch ms", value="1764136800000"),
    ],
)
END = OpenApiParameter(
    "end",
    str,
    description="Range end (exclusive): RFC 3339 with a zone or epoch milliseconds. Default: now.",
    examples=[OpenApiExample("RFC 3339", value="2026-11-26T07:00:00Z")],
)
FORMAT_JSON = OpenApiParameter(
    "format", str, enum=["json"], description="`json` forces JSON whatever `Accept` says."
)
LATEST_EXAMPLE = {
    "temperature": {"ts": "2026-11-26T06:40:00.123Z", "value": 21.5, "unit": "Cel"},
    "door_open": {"ts": "2026-11-26T06:39:58.000Z", "value": False, "unit": None},
}
POINT_EXAMPLE = {
    "ts": "2026-11-26T06:00:00.000Z",
    "count": 60,
    "avg": 21.4,
    "min": 20.9,
    "max": 21.8,
    "first": 21.0,
    "last": 21.7,
}


class DeviceLatestView(HistoryView):
    """GET the newest value of each metric of one device."""

    @extend_schema(
        operation_id="device_latest",
        summary="Latest value of each metric of a device",
        description="`{metric: {ts, value, unit}}`; `unit` is the last one the device gave "
        "(SenML), else null. A device that never reported gives `{}`.",
        parameters=[UID_PARAMETER, FORMAT_JSON],
        responses={
            200: OpenApiResponse(
                DEVICE_LATEST_SCHEMA,
                description="Each metric's newest reading.",
                examples=[OpenApiExample("two metrics", value=LATEST_EXAMPLE)],
            ),
            **error_responses(400, 401, 404, 429),
        },
        tags=["history"],
    )
    def get(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        return Response(latest_json(latest_for_device(device=device)))


class LatestView(HistoryView):
    """GET the newest values of several own devices (default all) in one call, streamed."""

    # Streamed JSON: the browsable API would hold the whole fleet in memory.
    renderer_classes = [JSONRenderer]

    @extend_schema(
        operation_id="fleet_latest",
        summary="Latest values of several devices",
        description="`{uid: {metric: {ts, value, unit}}}` for the user's devices in one "
        "query; unknown uids and other users' devices are left out. Streamed device by "
        "device, so a fleet of any size costs the hub constant memory.",
        parameters=[
            OpenApiParameter(
                "devices",
                str,
                description=f"Comma-separated uids (at most {MAX_LATEST_DEVICES}); "
                "default: every own device.",
                examples=[OpenApiExample("two devices", value="boiler-1,boiler-2")],
            ),
            FORMAT_JSON,
        ],
        responses={
            200: OpenApiResponse(
                FLEET_LATEST_SCHEMA,
                description="Each device's latest values.",
                examples=[OpenApiExample("one device", value={"boiler-1": LATEST_EXAMPLE})],
            ),
            **error_responses(400, 401, 429),
        },
        tags=["history"],
    )
    def get(self, request: AuthenticatedRequest) -> HttpResponseBase:
        query = LatestQuerySerializer(data=query_data(request.query_params))
        query.is_valid(raise_exception=True)
        # An API key limited to devices narrows the wanted uids to its own (devices.access).
        uids = visible_uids(request, query.validated_data.get("devices"))
        latest = latest_for_owner_iter(owner=request.user, uids=uids)
        members = ((uid, latest_json(values)) for uid, values in latest)
        return streaming_response(
            request, json_object_chunks(members), content_type="application/json"
        )


class ReadingsView(HistoryView):
    """GET raw readings by (ts, metric): JSON pages with a keyset cursor, or all of them as CSV."""

    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]

    @extend_schema(
        operation_id="device_readings",
        summary="Raw readings of a device",
        description="Readings in [start, end) ordered by (ts, metric), ascending or with "
        "`order=desc` newest first. JSON comes in pages: follow `next`, which pins the "
        "range; the cursor is a position, so readings stored meanwhile are never repeated "
        "nor skipped ahead of it. `format=csv` or `Accept: text/csv` streams every reading "
        "of the range as `ts,metric,value` (no pages, `limit` ignored).",
        parameters=[
            UID_PARAMETER,
            OpenApiParameter("metric", str, description="Only this metric."),
            START,
            END,
            OpenApiParameter(
                "order", str, enum=["asc", "desc"], default="asc", description="By ts."
            ),
            OpenApiParameter(
                "limit",
                int,
                default=DEFAULT_READINGS_LIMIT,
                description=f"Readings per page, 1 to {MAX_READINGS_LIMIT}.",
            ),
            OpenApiParameter("cursor", str, description="Opaque; use the `next` link as given."),
            OpenApiParameter(
                "format",
                str,
                enum=["json", "csv"],
                description="`csv` streams the whole range as CSV.",
            ),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                ReadingsPageSerializer,
                description="A page of readings.",
                examples=[
                    OpenApiExample(
                        "a page",
                        value={
                            "next": "https://hub.example/api/v1/devices/boiler-1/readings/"
                            "?cursor=WzE3NjQxMzY4MDAwMDAwMDAsInQiXQ&start=1764136800000"
                            "&end=1764140400000",
                            "results": [
                                {"ts": "2026-11-26T06:00:00.000Z", "metric": "t", "value": 21.5}
                            ],
                        },
                    )
                ],
            ),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="Every reading of the range, streamed.",
                examples=[
                    OpenApiExample(
                        "CSV",
                        value="ts,metric,value\r\n2026-11-26T06:00:00.000Z,t,21.5\r\n",
                    )
                ],
            ),
            **error_responses(400, 401, 404, 429),
        },
        tags=["history"],
    )
    def get(self, request: Request, uid: str) -> HttpResponseBase:
        device = own_device(request, uid)
        query = ReadingsQuerySerializer(
            data=query_data(request.query_params), context={"now_ms": now_ms()}
        )
        query.is_valid(raise_exception=True)
        params = query.validated_data
        filters: dict[str, Any] = {
            "device": device,
            "metric": params.get("metric"),
            "start_ms": params["start"],
            "end_ms": params["end"],
            "after": params.get("cursor"),
            "descending": params["order"] == "desc",
        }
        if isinstance(request.accepted_renderer, CSVRenderer):
            # The whole range, no pages: `limit` does not apply.
            return csv_response(
                request, filename=f"{device.uid}.csv", rows=readings_stream(**filters)
            )
        limit = params["limit"]
        rows = readings_page(**filters, limit=limit + 1)
        next_url = None
        if len(rows) > limit:
            rows = rows[:limit]
            last_ts, last_metric, _ = rows[-1]
            following = request.query_params.copy()
            following["cursor"] = encode_cursor((datetime_to_us(last_ts), last_metric))
            # Pin the range, so a default `end` of "now" does not move between pages.
            following["start"], following["end"] = str(params["start"]), str(params["end"])
            next_url = request.build_absolute_uri(f"{request.path}?{following.urlencode()}")
        return Response({"next": next_url, "results": [reading_json(row) for row in rows]})


class SeriesView(HistoryView):
    """GET time buckets (count, avg, min, max, first, last) of one or more metrics."""

    @extend_schema(
        operation_id="device_series",
        summary="Time buckets of one or more metrics",
        description="Buckets overlapping [start, end), each aggregating every numeric "
        "reading inside it (booleans count as 0 and 1, strings are left out), so the "
        "first and last may reach outside the range. Buckets follow the local clock of "
        "`tz`: `1d` is a calendar day (23 or 25 hours across a daylight-saving change), "
        "`1w` starts on Monday, `1mo` on the 1st. Read from hourly or minute rollups "
        "whenever the bucket bounds allow, so cost grows with the number of buckets. "
        "One metric gives `{metric, interval, unit, points}`; `metric=a,b` gives "
        "`{series: [...]}` in the order asked.",
        parameters=[
            UID_PARAMETER,
            OpenApiParameter(
                "metric",
                str,
                required=True,
                description=f"A metric, or up to {MAX_SERIES_METRICS} comma-separated.",
                examples=[
                    OpenApiExample("one", value="temperature"),
                    OpenApiExample("several", value="temperature,humidity"),
                ],
            ),
            START,
            END,
            OpenApiParameter(
                "interval",
                str,
                description="Bucket width: 10s to 1d dividing a day (10s, 1m, 15m, 1h, 6h, "
                "1d, …), or 1w or 1mo. A request returns at most HUB_MAX_SERIES_BUCKETS "
                "buckets (default 10 000), all its metrics together; past that it is a 400.",
                examples=[
                    OpenApiExample("quarter hours", value="15m"),
                    OpenApiExample("calendar months", value="1mo"),
                ],
            ),
            OpenApiParameter(
                "points",
                int,
                description="Instead of `interval`: the smallest of 10s, 15s, 30s, 1m, 2m, "
                "5m, 10m, 15m, 30m, 1h, 2h, 3h, 6h, 12h, 1d, 1w, 1mo giving at most this "
                f"many buckets (default {DEFAULT_POINTS}), up to HUB_MAX_SERIES_BUCKETS; with "
                "several metrics each gets at most that limit divided by their number.",
                examples=[OpenApiExample("a chart", value=500)],
            ),
            OpenApiParameter(
                "min_interval",
                str,
                description="Instead of `interval` or `points`: the smallest bucket width "
                "wanted, as Grafana's `$__interval` spells it (200ms, 20s, 5m, 1h, 7d) or "
                "bare milliseconds (`$__interval_ms`). The hub answers with the smallest of "
                "the `points` ladder at least that wide that keeps within "
                "HUB_MAX_SERIES_BUCKETS (1mo at most); `interval` in the answer says which.",
                examples=[
                    OpenApiExample("Grafana's $__interval", value="20s"),
                    OpenApiExample("Grafana's $__interval_ms", value="20000"),
                ],
            ),
            OpenApiParameter(
                "tz",
                str,
                default="UTC",
                description="IANA time zone the buckets align to.",
                examples=[
                    OpenApiExample("Berlin", value="Europe/Berlin"),
                    OpenApiExample("Kolkata", value="Asia/Kolkata"),
                ],
            ),
            OpenApiParameter(
                "fill",
                str,
                enum=["null"],
                description="`null`: empty buckets are points too, with count 0 and nulls "
                "(default: left out).",
            ),
            FORMAT_JSON,
        ],
        responses={
            200: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="SeriesResponse",
                    serializers=[SeriesSerializer, SeriesListSerializer],
                    resource_type_field_name=None,
                ),
                description="One metric's buckets, or `series` for several.",
                examples=[
                    OpenApiExample(
                        "one metric",
                        value={
                            "metric": "temperature",
                            "interval": "1h",
                            "unit": "Cel",
                            "points": [POINT_EXAMPLE],
                        },
                    ),
                    OpenApiExample(
                        "several",
                        value={
                            "series": [
                                {
                                    "metric": "temperature",
                                    "interval": "1d",
                                    "unit": "Cel",
                                    "points": [POINT_EXAMPLE],
                                },
                                {
                                    "metric": "humidity",
                                    "interval": "1d",
                                    "unit": "%RH",
                                    "points": [],
                                },
                            ]
                        },
                    ),
                ],
            ),
            **error_responses(400, 401, 404, 429, 503),
        },
        tags=["history"],
    )
    def get(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        query = SeriesQuerySerializer(
            data=query_data(request.query_params), context={"now_ms": now_ms()}
        )
        query.is_valid(raise_exception=True)
        params = query.validated_data
        metrics, bounds = params["metric"], params["bounds"]
        fill = bounds if params.get("fill") == "null" else None
        with series_slot():
            series = series_for_device(device=device, metrics=metrics, bounds=bounds)
            units = units_for_device(device=device, metrics=metrics)
            bodies = [
                series_json(
                    metric=metric,
                    interval=params["interval"],
                    unit=units.get(metric),
                    buckets=series[metric],
                    bounds=fill,
                )
                for metric in metrics
            ]
        return Response({"series": bodies} if params["multiple"] else bodies[0])


# A text cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_value(value: WireValue) -> str | int | float:
    """Write a value as its JSON spelling would read: true/false for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def formula_neutralised(value: WireValue) -> str | None:
    """Return a text value that a spreadsheet would run, made inert with a leading quote; else None.

    Numbers (negative ones too) are never touched: only text can be a formula.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return None


def csv_chunks(rows: Iterator[ReadingText]) -> Generator[str, None, None]:
    """Yield the CSV text of the rows, header first, a few thousand rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    # Neutralised text is also quoted, as OWASP advises: the row goes through a writer
    # that quotes every field (the ts and metric never need it, and read back the same).
    quoting_writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow(("ts", "metric", "value"))
    pending = 0
    for ts, metric, value in rows:
        inert = formula_neutralised(value)
        if inert is None:
            writer.writerow((ts, metric, csv_value(value)))
        else:
            quoting_writer.writerow((ts, metric, inert))
        pending += 1
        if pending == CSV_ROWS_PER_CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending or buffer.tell():
        yield buffer.getvalue()


def csv_response(
    request: Request, *, filename: str, rows: Iterator[ReadingText]
) -> StreamingHttpResponse:
    """Stream rows as CSV in constant memory, under WSGI and ASGI alike."""
    # Each chunk is computed in a history slot, none is held while the client reads.
    chunks = in_history_slots(csv_chunks(rows))
    response = streaming_response(request, chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
