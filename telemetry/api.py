"""REST endpoints for history: latest values, raw readings (JSON pages or CSV) and series."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponseBase, StreamingHttpResponse
from django.utils import timezone
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.views import FormatParamNegotiation, own_device
from telemetry.selectors import (
    ReadingRow,
    datetime_to_us,
    format_datetime,
    latest_for_device,
    latest_for_owner,
    readings_page,
    readings_stream,
    series_for_device,
)
from telemetry.serializers import (
    LatestQuerySerializer,
    ReadingsQuerySerializer,
    SeriesQuerySerializer,
    encode_cursor,
    latest_json,
    query_data,
    reading_json,
    series_json,
)
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
        renderer_context: dict[str, Any] | None = None,
    ) -> bytes:
        # Readings are streamed by the view, and errors are switched to JSON in
        # finalize_response, so this only runs if something else slips through.
        return JSONRenderer().render(data)


class HistoryView(APIView):
    """Base of the history endpoints: unknown formats are a 400, errors are always JSON."""

    content_negotiation_class = FormatParamNegotiation

    def finalize_response(
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if isinstance(response, Response) and isinstance(
            getattr(request, "accepted_renderer", None), CSVRenderer
        ):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


def now_ms() -> int:
    """Return the current time in epoch milliseconds."""
    return datetime_to_ms(timezone.now())


class DeviceLatestView(HistoryView):
    """GET the newest value of each metric of one device."""

    def get(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        return Response(latest_json(latest_for_device(device=device)))


class LatestView(HistoryView):
    """GET the newest values of several own devices (default all) in one call."""

    def get(self, request: Request) -> Response:
        query = LatestQuerySerializer(data=query_data(request.query_params))
        query.is_valid(raise_exception=True)
        latest = latest_for_owner(owner=request.user, uids=query.validated_data.get("devices"))
        return Response({uid: latest_json(values) for uid, values in latest.items()})


class ReadingsView(HistoryView):
    """GET raw readings by (ts, metric): JSON pages with a keyset cursor, or all of them as CSV."""

    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]

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

    def get(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        query = SeriesQuerySerializer(
            data=query_data(request.query_params), context={"now_ms": now_ms()}
        )
        query.is_valid(raise_exception=True)
        params = query.validated_data
        interval_ms = params["interval_ms"]
        series = series_for_device(
            device=device,
            metrics=params["metric"],
            start_ms=params["start"],
            end_ms=params["end"],
            interval_ms=interval_ms,
        )
        bodies = [
            series_json(metric=metric, interval_ms=interval_ms, buckets=series[metric])
            for metric in params["metric"]
        ]
        return Response({"series": bodies} if params["multiple"] else bodies[0])


def csv_value(value: WireValue) -> str | int | float:
    """Write a value as its JSON spelling would read: true/false for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def csv_chunks(rows: Iterator[ReadingRow]) -> Generator[str, None, None]:
    """Yield the CSV text of the rows, header first, a few thousand rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("ts", "metric", "value"))
    pending = 0
    for ts, metric, value in rows:
        writer.writerow((format_datetime(ts), metric, csv_value(value)))
        pending += 1
        if pending == CSV_ROWS_PER_CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()


def _next_chunk(chunks: Iterator[str]) -> str | None:
    return next(chunks, None)


async def _chunks_async(chunks: Generator[str, None, None]) -> AsyncIterator[str]:
    # Under ASGI a sync iterator would be read whole into memory before sending;
    # pull one chunk at a time on the request's database thread instead.
    pull = sync_to_async(_next_chunk, thread_sensitive=True)
    try:
        while (chunk := await pull(chunks)) is not None:
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=True)()


def csv_response(
    request: Request, *, filename: str, rows: Iterator[ReadingRow]
) -> StreamingHttpResponse:
    """Stream rows as CSV in constant memory, under WSGI and ASGI alike."""
    chunks = csv_chunks(rows)
    content: Iterator[str] | AsyncIterator[str] = (
        _chunks_async(chunks) if isinstance(request._request, ASGIRequest) else chunks
    )
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
