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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as paho
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer

from bridges.mqtt.config import BridgeConfig
from bridges.mqtt.connection import ConnectionLost, MqttConnection
from bridges.mqtt.control import (
    Event,
    command_payload,
    reply_event,
    sent_event,
    status_event,
)
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
# Commands held while the broker is unreachable; past this the oldest wait for the
# device's next reconnect to be handed out again.
COMMANDS_WAITING = 10_000
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
    # Device events (presence, command replies, commands sent) for the ingest worker.
    events: list[Event] = field(default_factory=list)
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
    layer_errors: int = 0


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
        # Commands from the hub: waiting for a connection, and published awaiting PUBACK.
        self._commands_waiting: deque[dict[str, Any]] = deque(maxlen=COMMANDS_WAITING)
        self._command_mids: dict[int, str] = {}
        self._drained = asyncio.Event()
        self._reply_channel = ""
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]

    def backlog(self) -> tuple[int, int, int]:
        """Return batches in flight, batches waiting for the window, readings not yet stored."""
        return len(self._in_flight), len(self._waiting), self._pending_readings

    async def run(self, stop: asyncio.Event) -> None:
        """Bridge until `stop` is set, then drain what is in flight and disconnect."""
        self._reply_channel = await self.layer.new_channel()
        helpers = [
            asyncio.create_task(self._send_loop(), name="bridge-send"),
            asyncio.create_task(self._reply_loop(), name="bridge-replies"),
            asyncio.create_task(self._resend_loop(), name="bridge-resend"),
            asyncio.create_task(self._commands_loop(), name="bridge-commands"),
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
                connection.on_published = self._on_published
                self._generation += 1
                self._command_mids.clear()
                while self._commands_waiting:
                    self._publish_command(self._commands_waiting.popleft())
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
        if topic is None:
            self._reject(message.topic, None, Rejection("invalid_topic", "unknown topic"))
            self._ack_now(message)
            return
        received = now_ms()
        if topic.kind == "status":
            self._take_event(
                message, topic.uid, status_event(topic.uid, message.payload, at_ms=received)
            )
            return
        if topic.kind == "reply":
            assert topic.command_id is not None
            event = reply_event(topic.uid, topic.command_id, message.payload, at_ms=received)
            self._take_event(message, topic.uid, event)
            return
        decode = _DECODERS.get(topic.kind)
        if decode is None:  # a kind the bridge does not subscribe to
            self._reject(message.topic, topic.uid, Rejection("invalid_topic", "unknown topic"))
            self._ack_now(message)
            return
        decoded = decode(topic.uid, message.payload, now_ms=received, limits=self.config.limits)
        for rejection in decoded.rejections:
            self._reject(message.topic, topic.uid, rejection)
        if not decoded.readings:
            self._ack_now(message)
            return
        batch = self._batch_open(received)
        batch.readings.extend(decoded.readings)
        if decoded.units:
            batch.units.setdefault(topic.uid, {}).update(decoded.units)
        self._pending_readings += len(decoded.readings)
        self.stats.readings += len(decoded.readings)
        self._batch_joined(message)

    def _take_event(self, message: paho.MQTTMessage, uid: str, event: Event | Rejection) -> None:
        """Put a control event in the open batch, or report why it was refused."""
        if isinstance(event, Rejection):
            self._reject(message.topic, uid, event)
            self._ack_now(message)
            return
        self._batch_open(event[-1]).events.append(event)
        self._batch_joined(message)

    def _batch_open(self, received_ms: int) -> Batch:
        """Return the open batch, starting its timer if it was empty."""
        batch = self._current
        if not batch.readings and not batch.events:
            batch.received_ms = received_ms
            self._flush_timer = asyncio.get_running_loop().call_later(
                self.config.batch_max_delay_s, self._on_batch_due
            )
        return batch

    def _batch_joined(self, message: paho.MQTTMessage | None) -> None:
        """Note a message that is now in the open batch; send the batch if it should go."""
        batch = self._current
        if message is not None and message.qos > 0:
            batch.mids.append(message.mid)
        idle = self.config.send_when_idle and not self._pending
        if len(batch.readings) >= self.config.batch_max_readings or idle:
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
        if not batch.readings and not batch.events:
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
        if batch.events:
            message["events"] = batch.events
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
                self.stats.layer_errors += 1
                logger.warning("bridge: channel layer send failed (%s); retrying", error)
                await asyncio.sleep(delay)
        batch.sent_at = time.monotonic()
        batch.attempts += 1
        self.stats.batches_sent += 1

    async def _received(self, channel: str) -> AsyncIterator[dict[str, Any]]:
        """Yield what arrives on a channel; while the layer is down, retry with backoff."""
        delays = backoff_delays(LAYER_RETRY_MIN_S, LAYER_RETRY_MAX_S)
        while True:
            try:
                message = await self.layer.receive(channel)
            except Exception as error:  # noqa: BLE001 - the layer's backend is down
                self.stats.layer_errors += 1
                logger.warning("bridge: channel layer receive failed (%s); retrying", error)
                await asyncio.sleep(next(delays))
                continue
            delays = backoff_delays(LAYER_RETRY_MIN_S, LAYER_RETRY_MAX_S)
            yield message

    async def _reply_loop(self) -> None:
        async for reply in self._received(self._reply_channel):
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
        for uid, topic, error in reply.get("rejected") or ():
            self._reject(topic, uid, Rejection("command_rejected", error))
        self.stats.readings_inserted += int(reply.get("inserted", 0))
        self.stats.readings_duplicate += int(reply.get("duplicates", 0))
        self.stats.unknown_device_readings += sum(dict(reply.get("unknown") or {}).values())
        # Message ids of an earlier connection mean nothing now: the broker
        # redelivers those messages, and dedup stores them once.
        if self._connection is not None and batch.generation == self._generation:
            for mid in batch.mids:
                self._connection.ack(mid)
        idle = self.config.send_when_idle and not self._pending
        if idle or (self._flush_timer is None and self._window_has_room()):
            self._seal()  # the store is idle, or the open batch was due while the window was full
        self._wake_sender.set()
        self._update_backpressure()
        if not self._pending:
            self._drained.set()

    async def _commands_loop(self) -> None:
        """Publish commands the hub hands to any bridge on the commands channel."""
        async for command in self._received(self.config.commands_channel):
            if command.get("type") != "command.publish":
                continue
            if self._connection is None or not self.connected.is_set():
                self._commands_waiting.append(command)
            else:
                self._publish_command(command)

    def _publish_command(self, command: dict[str, Any]) -> None:
        assert self._connection is not None
        topic = f"devices/{command['device']}/commands/{command['id']}"
        mid = self._connection.publish(
            topic, command_payload(command["method"], command.get("params") or {}), qos=1
        )
        self._command_mids[mid] = str(command["id"])

    def _on_published(self, mid: int) -> None:
        """A command reached the broker: tell the hub it is sent, inside the next batch."""
        command_id = self._command_mids.pop(mid, None)
        if command_id is not None:
            at = now_ms()
            self._batch_open(at).events.append(sent_event(command_id, at_ms=at))
            self._batch_joined(None)

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
