"""Prometheus metrics of every hub process: the series, the bridge's collector, the web view.

Hot paths pay little: the bridge already counts in its `BridgeStats`, which a
collector reads only when Prometheus scrapes; the ingest worker and the live
sockets add a few increments per batch or per frame, never per reading.
Every series is listed, with its type, labels and meaning, in docs/metrics.md.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bridges.mqtt.bridge import Bridge
    from devices.models import Command
    from telemetry.services import BatchApplied

logger = logging.getLogger(__name__)

# No `<counter>_created` series beside each counter: the start time is process_start_time_seconds.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Batch sizes in readings: from a lone message to the bridge's largest batch (5000 by default).
BATCH_READINGS_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000)
# Seconds, from the live path's tens of milliseconds to a backlog being caught up.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Ingest worker (`hub ingest`, `hub serve`).
INGEST_BATCHES = Counter(
    "hub_ingest_batches",
    "Batches taken from telemetry.ingest, by result: stored, failed (database error; "
    "the bridge resends) or malformed (dropped).",
    ["result"],
)
INGEST_STORED = INGEST_BATCHES.labels("stored")
INGEST_FAILED = INGEST_BATCHES.labels("failed")
INGEST_MALFORMED = INGEST_BATCHES.labels("malformed")
BATCH_READINGS = Histogram(
    "hub_ingest_batch_readings",
    "Readings per batch the ingest worker stored.",
    buckets=BATCH_READINGS_BUCKETS,
)
READINGS_STORED = Counter(
    "hub_readings_stored", "Readings committed to the database as new raw rows."
)
READINGS_DUPLICATE = Counter(
    "hub_readings_duplicate",
    "Readings already stored (a redelivery or a resent batch), not stored again.",
)
READINGS_UNKNOWN_DEVICE = Counter(
    "hub_readings_unknown_device",
    "Readings ignored because their device is unknown or disabled.",
)
INGEST_LAG = Histogram(
    "hub_ingest_lag_seconds",
    "Time from the bridge receiving a batch's first message to the batch being committed.",
    buckets=LAG_BUCKETS,
)
INGEST_STORE_SECONDS = Histogram(
    "hub_ingest_store_seconds",
    "Time the ingest worker spent storing one batch (its transactions, with the thread hop).",
    buckets=STORE_BUCKETS,
)
COMMAND_UPDATES = Counter(
    "hub_command_updates",
    "Command status changes this process applied: sent, succeeded and failed (from the "
    "devices, via the bridge), expired (the sweep).",
    ["status"],
)

# Live sockets (Daphne, `hub serve`).
WS_CONNECTIONS = Gauge(
    "hub_ws_connections", "Open, authenticated /ws/telemetry/ sockets in this process."
)
WS_CONNECTS = Counter(
    "hub_ws_connects",
    "WebSocket connections to /ws/telemetry/, by result: accepted or unauthenticated (4401).",
    ["result"],
)
WS_ACCEPTED = WS_CONNECTS.labels("accepted")
WS_UNAUTHENTICATED = WS_CONNECTS.labels("unauthenticated")
WS_FRAMES_SENT = Counter(
    "hub_ws_frames_sent",
    "Frames sent to live sockets, by kind: readings, control (status and command) or "
    "reply (subscribed, error).",
    ["kind"],
)
WS_READINGS_FRAMES = WS_FRAMES_SENT.labels("readings")
WS_CONTROL_FRAMES = WS_FRAMES_SENT.labels("control")
WS_REPLY_FRAMES = WS_FRAMES_SENT.labels("reply")
WS_READINGS_DROPPED = Counter(
    "hub_ws_readings_dropped",
    "Readings dropped from a slow socket's outbox (the live view is lossy; REST is the truth).",
)
WS_CONTROL_DROPPED = Counter(
    "hub_ws_control_frames_dropped",
    "Status and command frames dropped from a slow socket's bounded queue.",
)

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

# Database state, refreshed by each GET /metrics of a web process.
DEVICES = Gauge(
    "hub_devices", "Registered devices by state: online, offline or disabled.", ["state"]
)
COMMANDS = Gauge("hub_commands", "Commands in the database by status.", ["status"])


def batch_stored(applied: BatchApplied, readings: int, *, received_ms: int, started: float) -> None:
    """Count one committed batch: its size, new and duplicate readings, lag and store time."""
    now = time.perf_counter()
    stored = applied.stored
    INGEST_STORED.inc()
    BATCH_READINGS.observe(readings)
    READINGS_STORED.inc(stored.inserted)
    READINGS_DUPLICATE.inc(stored.duplicates)
    if stored.unknown:
        READINGS_UNKNOWN_DEVICE.inc(sum(stored.unknown.values()))
    INGEST_STORE_SECONDS.observe(now - started)
    INGEST_LAG.observe(max(0.0, time.time() - received_ms / 1000))
    if applied.events.commands:
        commands_updated(applied.events.commands)


def commands_updated(commands: Iterable[Command]) -> None:
    """Count command status changes by their new status."""
    for command in commands:
        COMMAND_UPDATES.labels(command.status).inc()


def channel_layer_error(component: str) -> None:
    """Count one failed channel-layer call of `component` (the bridge counts its own)."""
    _collector.layer_errors[component] += 1


def bridge_watch(bridge: Bridge) -> None:
    """Export a bridge's counters and state from this process (read at scrape time)."""
    _collector.bridges.add(bridge)


class HubCollector(Collector):
    """Series read at scrape time: the bridges' own counters, and channel-layer errors."""

    def __init__(self) -> None:
        self.bridges: weakref.WeakSet[Bridge] = weakref.WeakSet()
        self.layer_errors: Tally[str] = Tally()

    def describe(self) -> Iterable[Metric]:
        """Return nothing: the series depend on what the process runs."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Yield the bridge series (when a bridge runs here) and the layer errors."""
        layer = CounterMetricFamily(
            "hub_channel_layer_errors",
            "Channel-layer (Redis) calls that failed and were retried or given up, by "
            "component: bridge or ingest.",
            labels=["component"],
        )
        for component, count in sorted(dict(self.layer_errors).items()):
            layer.add_metric([component], count)
        bridges = list(self.bridges)
        if bridges:
            layer.add_metric(["bridge"], sum(bridge.stats.layer_errors for bridge in bridges))
            yield from _bridge_metrics(bridges)
        yield layer


def _bridge_metrics(bridges: list[Bridge]) -> Iterable[Metric]:
    stats = [bridge.stats for bridge in bridges]

    def counter(name: str, text: str, value: Callable[[Any], int]) -> Metric:
        return CounterMetricFamily(name, text, value=sum(value(item) for item in stats))

    yield counter(
        "hub_mqtt_messages_received",
        "MQTT messages the bridge received, every topic.",
        lambda s: s.messages,
    )
    yield counter(
        "hub_readings_received",
        "Readings the bridge decoded and queued for storage.",
        lambda s: s.readings,
    )
    rejections = CounterMetricFamily(
        "hub_rejections",
        "Messages or readings rejected, by reason (reported on devices/{uid}/errors).",
        labels=["reason"],
    )
    reasons: Tally[str] = Tally()
    for item in stats:
        reasons.update(dict(item.rejections))
    for reason, count in sorted(reasons.items()):
        rejections.add_metric([reason], count)
    yield rejections
    yield counter(
        "hub_bridge_batches_sent",
        "Batches the bridge sent to telemetry.ingest, resends included.",
        lambda s: s.batches_sent,
    )
    yield counter(
        "hub_bridge_batches_confirmed",
        "Batches an ingest worker confirmed stored (their MQTT messages are then acknowledged).",
        lambda s: s.batches_stored,
    )
    yield counter(
        "hub_bridge_resends",
        "Batches sent again because no confirmation came within HUB_INGEST_TIMEOUT_SECONDS.",
        lambda s: s.resends,
    )
    yield counter(
        "hub_mqtt_connects", "Successful connections to the broker.", lambda s: s.connects
    )
    in_flight, waiting, pending = 0, 0, 0
    for bridge in bridges:
        window = bridge.backlog()
        in_flight, waiting, pending = (
            in_flight + window[0],
            waiting + window[1],
            pending + window[2],
        )
    yield GaugeMetricFamily(
        "hub_bridge_batches_in_flight",
        "Batches sent to telemetry.ingest and not yet confirmed stored.",
        value=in_flight,
    )
    yield GaugeMetricFamily(
        "hub_bridge_batches_waiting",
        "Sealed batches waiting for room in the window of batches in flight.",
        value=waiting,
    )
    yield GaugeMetricFamily(
        "hub_bridge_readings_pending",
        "Readings received and not yet confirmed stored (the bridge stops reading MQTT "
        "past its bound).",
        value=pending,
    )
    yield GaugeMetricFamily(
        "hub_mqtt_connected",
        "Bridges of this process connected to the broker (1 or 0 for one bridge).",
        value=sum(1 for bridge in bridges if bridge.connected.is_set()),
    )


_collector = HubCollector()
REGISTRY.register(_collector)


def database_gauges_refresh() -> None:
    """Set the device and command gauges from the database (two grouped counts)."""
    from devices.models import Command, CommandStatus, Device

    states = dict.fromkeys(("online", "offline", "disabled"), 0)
    for row in Device.objects.order_by().values("active", "online").annotate(n=Count("id")):
        state = "disabled" if not row["active"] else "online" if row["online"] else "offline"
        states[state] += row["n"]
    for state, count in states.items():
        DEVICES.labels(state).set(count)
    statuses = dict.fromkeys(CommandStatus.values, 0)
    for row in Command.objects.order_by().values("status").annotate(n=Count("id")):
        statuses[row["status"]] = row["n"]
    for status, count in statuses.items():
        COMMANDS.labels(status).set(count)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: every series of this process, as Prometheus text (or OpenMetrics if asked)."""
    try:
        database_gauges_refresh()
    except Exception as error:  # noqa: BLE001 - the other series are still worth serving
        logger.warning("metrics: device and command counts unavailable: %s", error)
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
