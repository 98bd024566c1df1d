"""The MQTT bridge: decode device messages, batch them, and confirm them once stored.

A QoS 1 message is acknowledged to the broker only after the ingest consumer
reports the batch holding it committed, so the broker redelivers anything a
crash loses; dedup on (device, metric, ts) makes the redelivery harmless.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as paho
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer

from bridges.mqtt.config import BridgeConfig
from bridges.mqtt.connection import ConnectionLost, MqttConnection
from telemetry.codec import (
    Decoded,
    Limits,
    Reading,
    Rejection,
    decode_senml,
    decode_telemetry,
    encode_error,
    parse_topic,
)
from telemetry.groups import INGEST_CHANNEL

logger = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
LAYER_RETRY_MIN_S = 0.05
LAYER_RETRY_MAX_S = 2.0
RESEND_CHECK_S = 1.0
# On shutdown, how long to wait for batches in flight to be confirmed.
DRAIN_DEADLINE_S = 8.0


class _Decoder(Protocol):
    def __call__(
        self, uid: str, payload: bytes | bytearray, *, now_ms: int, limits: Limits
    ) -> Decoded: ...


# Topic kind -> the codec for its payloads.
_DECODERS: dict[str, _Decoder] = {"telemetry": decode_telemetry, "senml": decode_senml}


def backoff_delays(minimum: float, maximum: float) -> Any:
    """Yield capped exponential delays with full jitter."""
    for attempt in itertools.count():
        yield random.uniform(minimum, min(maximum, minimum * 2**attempt))  # noqa: S311


def now_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Batch:
    """Readings on their way to the store, with the MQTT messages they came in."""

    readings: list[Reading] = field(default_factory=list)
    # uid -> metric -> unit (SenML): the last unit each metric was given in the batch.
    units: dict[str, dict[str, str]] = field(default_factory=dict)
    mids: list[int] = field(default_factory=list)
    generation: int = 0
    received_ms: int = 0
    sent_at: float | None = None
    attempts: int = 0


@dataclass(slots=True)
class BridgeStats:
    """Counters for logs, tests and metrics."""

    messages: int = 0
    readings: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    batches_sent: int = 0
    batches_stored: int = 0
    resends: int = 0
    readings_inserted: int = 0
    readings_duplicate: int = 0
    unknown_device_readings: int = 0
    connects: int = 0


class Bridge:
    """One bridge worker: MQTT in, channel-layer batches out, acknowledgements back."""

    def __init__(self, config: BridgeConfig, layer: BaseChannelLayer | None = None) -> None:
        self.config = config
        self.layer = layer or get_channel_layer()
        self.stats = BridgeStats()
        self.connected = asyncio.Event()
        self._connection: MqttConnection | None = None
        self._generation = 0
        self._current = Batch()
        self._flush_timer: asyncio.TimerHandle | None = None
        # Sealed batches by id: waiting for a place in the window, or sent and unconfirmed.
        self._pending: dict[str, Batch] = {}
        self._waiting: deque[str] = deque()
        self._in_flight: set[str] = set()
        self._pending_readings = 0
        self._wake_sender = asyncio.Event()
        self._drained = asyncio.Event()
        self._reply_channel = ""
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]

    async def run(self, stop: asyncio.Event) -> None:
        """Bridge until `stop` is set, then drain what is in flight and disconnect."""
        self._reply_channel = await self.layer.new_channel()
        helpers = [
            asyncio.create_task(self._send_loop(), name="bridge-send"),
            asyncio.create_task(self._reply_loop(), name="bridge-replies"),
            asyncio.create_task(self._resend_loop(), name="bridge-resend"),
        ]
        try:
            await self._connection_loop(stop)
            await self._drain()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self._connection is not None:
                await self._connection.disconnect()
            logger.info(
                "bridge: stopped after %d messages, %d readings, %d batches stored",
                self.stats.messages,
                self.stats.readings,
                self.stats.batches_stored,
            )

    async def _connection_loop(self, stop: asyncio.Event) -> None:
        delays = backoff_delays(RECONNECT_MIN_S, RECONNECT_MAX_S)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                connection = MqttConnection(self.config, self._on_message)
                try:
                    await connection.connect()
                    connection.subscribe(self.config.topic_filters())
                except ConnectionLost as error:
                    delay = next(delays)
                    logger.warning("bridge: %s; retrying in %.1f s", error, delay)
                    await asyncio.wait({stopping}, timeout=delay)
                    continue
                delays = backoff_delays(RECONNECT_MIN_S, RECONNECT_MAX_S)
                self._connection = connection
                self._generation += 1
                self.stats.connects += 1
                self._update_backpressure()
                self.connected.set()
                closed = asyncio.ensure_future(connection.wait_closed())
                await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if closed.done():
                    self.connected.clear()
                    logger.warning("bridge: connection lost (%s); reconnecting", closed.result())
                    await asyncio.wait({stopping}, timeout=next(delays))
                else:
                    closed.cancel()
        finally:
            stopping.cancel()

    async def _drain(self) -> None:
        """Stop taking messages, send the open batch, and wait for what is in flight."""
        if self._connection is not None:
            self._connection.pause_reading()
        self._seal()
        if self._pending:
            self._drained.clear()
            try:
                await asyncio.wait_for(self._drained.wait(), DRAIN_DEADLINE_S)
            except TimeoutError:
                logger.warning(
                    "bridge: %d batches unconfirmed at shutdown; the broker will redeliver them",
                    len(self._pending),
                )

    # MQTT side, called by paho on the event loop.

    def _on_message(self, message: paho.MQTTMessage) -> None:
        self.stats.messages += 1
        topic = parse_topic(message.topic)
        decode = None if topic is None else _DECODERS.get(topic.kind)
        if topic is None or decode is None:
            self._reject(message.topic, None, Rejection("invalid_topic", "unknown topic"))
            self._ack_now(message)
            return
        received = now_ms()
        decoded = decode(topic.uid, message.payload, now_ms=received, limits=self.config.limits)
        for rejection in decoded.rejections:
            self._reject(message.topic, topic.uid, rejection)
        if not decoded.readings:
            self._ack_now(message)
            return
        batch = self._current
        if not batch.readings:
            batch.received_ms = received
            self._flush_timer = asyncio.get_running_loop().call_later(
                self.config.batch_max_delay_s, self._on_batch_due
            )
        batch.readings.extend(decoded.readings)
        if decoded.units:
            batch.units.setdefault(topic.uid, {}).update(decoded.units)
        self._pending_readings += len(decoded.readings)
        self.stats.readings += len(decoded.readings)
        if message.qos > 0:
            batch.mids.append(message.mid)
        if len(batch.readings) >= self.config.batch_max_readings or not self._pending:
            # Full, or nothing is being stored: send now. Under load, batches in
            # flight let the open one grow, which is how the store keeps up.
            self._seal()
            self._update_backpressure()

    def _ack_now(self, message: paho.MQTTMessage) -> None:
        if message.qos > 0 and self._connection is not None:
            self._connection.ack(message.mid)

    def _reject(self, topic: str, uid: str | None, rejection: Rejection) -> None:
        self.stats.rejections[rejection.reason] += 1
        logger.info("bridge: rejected from %s: %s: %s", topic, rejection.reason, rejection.detail)
        if uid is not None and self._connection is not None:
            self._connection.publish(
                f"devices/{uid}/errors", encode_error(topic, rejection, at_ms=now_ms())
            )

    def _on_batch_due(self) -> None:
        self._flush_timer = None
        # With the window full, let the open batch grow: fewer, larger transactions
        # are how the store catches up.
        if self._window_has_room():
            self._seal()

    def _window_has_room(self) -> bool:
        return len(self._in_flight) + len(self._waiting) < self.config.batches_in_flight

    def _seal(self) -> None:
        """Close the open batch and queue it for sending."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch = self._current
        if not batch.readings:
            return
        self._current = Batch()
        batch.generation = self._generation
        batch_id = f"{self._prefix}-{next(self._ids)}"
        self._pending[batch_id] = batch
        self._waiting.append(batch_id)
        self._wake_sender.set()

    def _update_backpressure(self) -> None:
        if self._connection is None:
            return
        if self._pending_readings >= self.config.max_pending_readings:
            self._connection.pause_reading()
        else:
            self._connection.resume_reading()

    # Channel-layer side.

    async def _send_loop(self) -> None:
        """Send waiting batches while the window of unconfirmed batches has room."""
        while True:
            await self._wake_sender.wait()
            self._wake_sender.clear()
            while self._waiting and len(self._in_flight) < self.config.batches_in_flight:
                batch_id = self._waiting.popleft()
                batch = self._pending.get(batch_id)
                if batch is None:
                    continue
                self._in_flight.add(batch_id)
                await self._send(batch_id, batch)

    async def _send(self, batch_id: str, batch: Batch) -> None:
        message = {
            "type": "ingest.batch",
            "batch": batch_id,
            "reply": self._reply_channel,
            "received": batch.received_ms,
            "readings": batch.readings,
        }
        if batch.units:
            message["units"] = batch.units
        delays = backoff_delays(LAYER_RETRY_MIN_S, LAYER_RETRY_MAX_S)
        while True:
            try:
                await self.layer.send(INGEST_CHANNEL, message)
                break
            except ChannelFull:
                # Ingest is behind: wait, never drop.
                await asyncio.sleep(next(delays))
            except Exception as error:  # noqa: BLE001 - the layer's backend is down
                delay = next(delays)
                logger.warning("bridge: channel layer send failed (%s); retrying", error)
                await asyncio.sleep(delay)
        batch.sent_at = time.monotonic()
        batch.attempts += 1
        self.stats.batches_sent += 1

    async def _reply_loop(self) -> None:
        delays = backoff_delays(LAYER_RETRY_MIN_S, LAYER_RETRY_MAX_S)
        while True:
            try:
                reply = await self.layer.receive(self._reply_channel)
            except Exception as error:  # noqa: BLE001 - the layer's backend is down
                logger.warning("bridge: channel layer receive failed (%s); retrying", error)
                await asyncio.sleep(next(delays))
                continue
            delays = backoff_delays(LAYER_RETRY_MIN_S, LAYER_RETRY_MAX_S)
            if reply.get("type") == "ingest.stored":
                self._on_stored(reply)

    def _on_stored(self, reply: dict[str, Any]) -> None:
        batch_id = str(reply.get("batch"))
        batch = self._pending.pop(batch_id, None)
        if batch is None:
            return  # a late reply to a batch that was resent and confirmed already
        self._in_flight.discard(batch_id)
        self._pending_readings -= len(batch.readings)
        self.stats.batches_stored += 1
        self.stats.readings_inserted += int(reply.get("inserted", 0))
        self.stats.readings_duplicate += int(reply.get("duplicates", 0))
        self.stats.unknown_device_readings += sum(dict(reply.get("unknown") or {}).values())
        # Message ids of an earlier connection mean nothing now: the broker
        # redelivers those messages, and dedup stores them once.
        if self._connection is not None and batch.generation == self._generation:
            for mid in batch.mids:
                self._connection.ack(mid)
        if not self._pending or (self._flush_timer is None and self._window_has_room()):
            self._seal()  # the store is idle, or the open batch was due while the window was full
        self._wake_sender.set()
        self._update_backpressure()
        if not self._pending:
            self._drained.set()

    async def _resend_loop(self) -> None:
        while True:
            await asyncio.sleep(RESEND_CHECK_S)
            deadline = time.monotonic() - self.config.ingest_timeout_s
            for batch_id in list(self._in_flight):
                batch = self._pending[batch_id]
                if batch.sent_at is not None and batch.sent_at < deadline:
                    logger.warning("bridge: batch %s not confirmed; sending it again", batch_id)
                    batch.sent_at = None
                    self.stats.resends += 1
                    await self._send(batch_id, batch)
