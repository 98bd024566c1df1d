"""Prometheus series of the bridge and the embedded broker, read from their own counters.

The bridge already counts in its `BridgeStats` and the broker in its stats; a
collector reads them only when Prometheus scrapes, so the hot path pays nothing.
docs/metrics.md lists every series of the hub.
"""

from __future__ import annotations

import weakref
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from telemetry.metrics import channel_layer_errors_source

if TYPE_CHECKING:
    from bridges.mqtt.bridge import Bridge
    from bridges.mqtt.broker import HubBroker


def bridge_watch(bridge: Bridge) -> None:
    """Export a bridge's counters and state from this process (read at scrape time)."""
    _collector.bridges.add(bridge)


def broker_watch(broker: HubBroker) -> None:
    """Export the embedded broker's connections and refusals from this process."""
    _collector.brokers.add(broker)


class BridgeCollector(Collector):
    """Series read at scrape time: the bridges' and the embedded brokers' own counters."""

    def __init__(self) -> None:
        self.bridges: weakref.WeakSet[Bridge] = weakref.WeakSet()
        self.brokers: weakref.WeakSet[HubBroker] = weakref.WeakSet()

    def describe(self) -> Iterable[Metric]:
        """Return nothing: the series depend on what the process runs."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Yield the bridge series (when a bridge runs here) and the broker's."""
        bridges = list(self.bridges)
        if bridges:
            yield from _bridge_metrics(bridges)
        yield from _broker_metrics(list(self.brokers))

    def layer_errors(self) -> int | None:
        """Return the bridges' failed channel-layer calls; None when no bridge runs here."""
        bridges = list(self.bridges)
        if not bridges:
            return None
        return sum(bridge.stats.layer_errors for bridge in bridges)


def _broker_metrics(brokers: list[HubBroker]) -> Iterable[Metric]:
    """Yield the embedded broker's series (at 0 in a process without one)."""
    from bridges.mqtt.broker import (
        CLOSED_REASONS,
        PUBLISH_REFUSED_REASONS,
        REFUSED_REASONS,
    )

    yield GaugeMetricFamily(
        "hub_mqtt_broker_connections",
        "Open sockets on the embedded broker (hub serve), connected or not yet.",
        value=sum(broker.connections for broker in brokers),
    )
    tallies: tuple[tuple[str, str, tuple[str, ...], Callable[[HubBroker], Tally[str]]], ...] = (
        (
            "hub_mqtt_broker_refused",
            "Connections the embedded broker refused at or before CONNECT, by reason.",
            REFUSED_REASONS,
            lambda broker: broker.stats.refused,
        ),
        (
            "hub_mqtt_broker_closed",
            "Connections the embedded broker closed after CONNECT, by reason.",
            CLOSED_REASONS,
            lambda broker: broker.stats.closed,
        ),
        (
            "hub_mqtt_broker_publishes_refused",
            "Device publishes the embedded broker did not pass on, by reason.",
            PUBLISH_REFUSED_REASONS,
            lambda broker: broker.stats.publishes_refused,
        ),
    )
    for name, text, reasons, tally in tallies:
        family = CounterMetricFamily(name, text, labels=["reason"])
        for reason in reasons:
            family.add_metric([reason], sum(tally(broker)[reason] for broker in brokers))
        yield family
    yield CounterMetricFamily(
        "hub_mqtt_broker_deliveries_dropped",
        "Messages for a device the embedded broker dropped: too many already on their way.",
        value=sum(broker.stats.deliveries_dropped for broker in brokers),
    )
    yield CounterMetricFamily(
        "hub_mqtt_broker_retained_dropped",
        "Retained messages the embedded broker dropped because their device was deleted.",
        value=sum(broker.stats.retained_dropped for broker in brokers),
    )


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
        "hub_mqtt_retained_ignored",
        "Retained telemetry and SenML messages the bridge ignored (replayed at subscription).",
        lambda s: s.retained_ignored,
    )
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


_collector = BridgeCollector()
REGISTRY.register(_collector)
channel_layer_errors_source("bridge", _collector.layer_errors)
