"""Every Prometheus series of a hub process: the apps' own, HTTP's, and the /metrics view.

Each app defines its series in its own `metrics` module (`devices.metrics`,
`alarms.metrics`, `telemetry.metrics`, `bridges.mqtt.metrics`); this module
imports them all, so every process that serves /metrics shows every series
(at 0 where it does not run that part), and adds the web process's HTTP series.
Every series is listed, with its type, labels and meaning, in docs/metrics.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

# The apps' series: imported for their registration, whatever this process runs.
import alarms.metrics  # noqa: F401
from bridges.mqtt.metrics import bridge_watch, broker_watch
from devices.metrics import database_gauges_refresh
from telemetry.metrics import storage_forget, storage_refresh

__all__ = ["RequestMetricsMiddleware", "bridge_watch", "broker_watch", "metrics_view"]

logger = logging.getLogger(__name__)

# No `<counter>_created` series beside each counter: the start time is
# process_start_time_seconds. Read when a scrape renders the series, so it holds for the
# apps' series too, whenever they were created.
disable_created_metrics()  # type: ignore[no-untyped-call]

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# HTTP (Daphne, `hub serve`).
HTTP_REQUESTS = Counter(
    "hub_http_requests",
    "HTTP requests answered by Django, by method and status code.",
    ["method", "code"],
)
HTTP_SECONDS = Histogram(
    "hub_http_request_seconds",
    "Time Django took to produce a response (a streamed body may take longer to send).",
    buckets=HTTP_BUCKETS,
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: every series of this process, as Prometheus text (or OpenMetrics if asked)."""
    try:
        database_gauges_refresh()
        storage_refresh()
    except Exception as error:  # noqa: BLE001 - the other series are still worth serving
        storage_forget()
        logger.warning("metrics: database counts or storage report unavailable: %s", error)
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(REGISTRY), content_type=content_type)


class RequestMetricsMiddleware:
    """Count each HTTP request by method and status code, and time it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        """Time the rest of the stack and count its answer."""
        if self.is_async:
            return self._acall(request)
        started = time.perf_counter()
        response = self.get_response(request)
        _request_count(request, response, started)
        return response

    async def _acall(self, request: HttpRequest) -> Any:
        started = time.perf_counter()
        response = await self.get_response(request)
        _request_count(request, response, started)
        return response


def _request_count(request: HttpRequest, response: Any, started: float) -> None:
    HTTP_SECONDS.observe(time.perf_counter() - started)
    method = request.method if request.method in _METHODS else "other"
    HTTP_REQUESTS.labels(method, str(getattr(response, "status_code", 0))).inc()
