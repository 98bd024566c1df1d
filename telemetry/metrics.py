"""Prometheus series of the telemetry app: the ingest worker, the live sockets, the storage.

The ingest worker and the live sockets add a few increments per batch or per
frame, never per reading. docs/metrics.md lists every series of the hub.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from devices.metrics import commands_updated

if TYPE_CHECKING:
    from telemetry.services import BatchApplied
    from telemetry.storage_report import StorageReport

# Batch sizes in readings: from a lone message to the bridge's largest batch (5000 by default).
BATCH_READINGS_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000)
# Seconds, from the live path's tens of milliseconds to a backlog being caught up.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# HTTP ingest (`POST /api/v1/devices/{uid}/telemetry/`).
HTTP_INGEST_REJECTIONS = Counter(
    "hub_http_ingest_rejections",
    "Readings (or whole bodies) refused by HTTP ingest, by reason.",
    ["reason"],
)

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

# Live sockets (Daphne, `hub serve`).
WS_CONNECTIONS = Gauge(
    "hub_ws_connections", "Open, authenticated /ws/telemetry/ sockets in this process."
)
WS_CONNECTS = Counter(
    "hub_ws_connects",
    "WebSocket connections to /ws/telemetry/, by result: accepted, unauthenticated (4401) "
    "or too_many (4429: past HUB_WS_MAX_SOCKETS_PER_USER).",
    ["result"],
)
WS_ACCEPTED = WS_CONNECTS.labels("accepted")
WS_UNAUTHENTICATED = WS_CONNECTS.labels("unauthenticated")
WS_TOO_MANY = WS_CONNECTS.labels("too_many")
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


def channel_layer_error(component: str, count: int = 1) -> None:
    """Count failed channel-layer calls of `component` (the bridge counts its own)."""
    if count:
        _collector.layer_errors[component] += count


def channel_layer_errors_source(component: str, count: Callable[[], int | None]) -> None:
    """Add `component`'s own count of layer errors to the series (None: not in this process)."""
    _collector.sources[component] = count


def storage_refresh() -> None:
    """Read the storage report for hub_storage_info and hub_storage_jobs_failing."""
    from django.db import connection
    from django.utils import timezone

    from telemetry.storage_report import storage_report

    _collector.storage = storage_report(connection, now=timezone.now())


def storage_forget() -> None:
    """Drop the last storage report (it could not be read): its series go until the next."""
    _collector.storage = None


class TelemetryCollector(Collector):
    """Series read at scrape time: channel-layer errors and the storage report."""

    def __init__(self) -> None:
        self.layer_errors: Tally[str] = Tally()
        self.sources: dict[str, Callable[[], int | None]] = {}
        # Set by each web scrape (storage_refresh); None elsewhere or when unreadable.
        self.storage: StorageReport | None = None

    def describe(self) -> Iterable[Metric]:
        """Return nothing: the series depend on what the process runs."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Yield the layer errors and, once a web scrape read it, the storage report."""
        layer = CounterMetricFamily(
            "hub_channel_layer_errors",
            "Channel-layer (Redis) calls that failed and were retried or given up, by "
            "component: bridge or ingest.",
            labels=["component"],
        )
        for component, count in sorted(dict(self.layer_errors).items()):
            layer.add_metric([component], count)
        for component, source in sorted(self.sources.items()):
            value = source()
            if value is not None:
                layer.add_metric([component], value)
        yield layer
        if self.storage is not None:
            yield from _storage_metrics(self.storage)


def _storage_metrics(report: StorageReport) -> Iterable[Metric]:
    yield InfoMetricFamily(
        "hub_storage",
        "The storage of raw readings: backend (sqlite, postgresql, timescaledb), version "
        "(as the migrate line says it), compression (true when set with its policy).",
        value={
            "backend": report.backend,
            "version": report.label,
            "postgresql": report.postgresql or "",
            "timescaledb": report.timescaledb or "",
            "hypertable": str(report.hypertable).lower(),
            "compression": str(report.compression and report.compression_policy).lower(),
        },
    )
    yield GaugeMetricFamily(
        "hub_storage_jobs_failing",
        "TimescaleDB background jobs of the readings hypertable (compression, retention) "
        "whose last run failed or that are overdue; 0 without TimescaleDB.",
        value=report.jobs_failing,
    )


_collector = TelemetryCollector()
REGISTRY.register(_collector)
