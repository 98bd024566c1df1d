"""The MQTT bridge: decode device messages, batch them, and confirm them once stored.

A QoS 1 message is acknowledged to the broker only after the ingest consumer
reports the batch holding it committed, so the broker redelivers anything a
crash loses; dedup on (device, metric, ts) makes the redelivery harmless.
This module is the connection and the channel-layer side; the batching window
is bridges/mqtt/window.py, command publishing bridges/mqtt/commands.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as paho
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer

from bridges.mqtt.commands import CommandPublisher
from bridges.mqtt.config import BridgeConfig
from bridges.mqtt.connection import ConnectionLost, MqttConnection
from bridges.mqtt.control import reply_event, reported_event, sent_event, status_event
from bridges.mqtt.receive import Incoming
from bridges.mqtt.refusals import too_many_metrics
from bridges.mqtt.rejection_log import RejectionLog
from bridges.mqtt.window import Batch, BatchWindow
from devices.events import ATTRIBUTES_PUBLISH, COMMAND_PUBLISH, DeviceEvent, events_encode
from telemetry.codec import (
    Decoded,
    Limits,
    Rejection,
    decode_senml,
    decode_telemetry,
    encode_error,
    parse_topic,
)
from telemetry.groups import INGEST_BATCH, INGEST_CHANNEL, INGEST_STORED

logger = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
LAYER_RETRY_MIN_S = 0.05
LAYER_RETRY_MAX_S = 2.0
RESEND_CHECK_S = 1.0
# On shutdown, how long to wait for batches in flight to be confirmed.
DRAIN_DEADLINE_S = 8.0


# A received PUBLISH: Incoming from the fast path, paho's own object otherwise.
Message = Incoming | paho.MQTTMessage


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
    retained_ignored: int = 0


class Bridge:
    """One bridge worker: MQTT in, channel-layer batches out, acknowledgements back."""

    def __init__(self, config: BridgeConfig, layer: BaseChannelLayer | None = None) -> None:
        self.config = config
        layer = layer or get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS has no default layer"
        self.layer: BaseChannelLayer = layer
        self.stats = BridgeStats()
        self._rejection_log = RejectionLog(logger, config.rejection_log_interval_s)
        self.connected = asyncio.Event()
        self._connection: MqttConnection | None = None
        self.window = BatchWindow(
            max_readings=config.batch_max_readings,
            max_delay_s=config.batch_max_delay_s,
            in_flight_max=config.batches_in_flight,
            send_when_idle=config.send_when_idle,
        )
        self._commands = CommandPublisher()
        self._reply_channel = ""

    def backlog(self) -> tuple[int, int, int]:
        """Return batches in flight, batches waiting for the window, readings not yet stored."""
        return self.window.backlog()

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
            self._rejection_log.close()
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
                self.window.generation += 1
                self._commands.connected(connection)
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
        window = self.window
        window.seal()
        if window.pending:
            window.drained.clear()
            logger.info(
                "bridge: draining: waiting up to %.0f s for %d unconfirmed batches",
                DRAIN_DEADLINE_S,
                len(window.pending),
            )
            try:
                await asyncio.wait_for(window.drained.wait(), DRAIN_DEADLINE_S)
            except TimeoutError:
                logger.warning(
                    "bridge: %d batches unconfirmed at shutdown; the broker will redeliver them",
                    len(window.pending),
                )

    # MQTT side, called by paho on the event loop.

    def _on_message(self, message: Message) -> None:
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
        if topic.kind == "reported":
            if message.retain:
                # Replayed at every subscription, an old patch would undo newer ones.
                self.stats.retained_ignored += 1
                self._ack_now(message)
                return
            self._take_event(
                message, topic.uid, reported_event(topic.uid, message.payload, at_ms=received)
            )
            return
        decode = _DECODERS.get(topic.kind)
        if decode is None:  # a kind the bridge does not subscribe to
            self._reject(message.topic, topic.uid, Rejection("invalid_topic", "unknown topic"))
            self._ack_now(message)
            return
        if message.retain:
            # A broker replays a retained reading at every subscription: it would be stored
            # again at each reconnect (without ts, as new) and for the uid's next owner.
            self.stats.retained_ignored += 1
            logger.debug("bridge: ignored a retained message on %s", message.topic)
            self._ack_now(message)
            return
        decoded = decode(topic.uid, message.payload, now_ms=received, limits=self.config.limits)
        for rejection in decoded.rejections:
            self._reject(message.topic, topic.uid, rejection)
        if not decoded.readings:
            self._ack_now(message)
            return
        batch = self.window.open(received)
        batch.topics.append((len(batch.readings), message.topic))
        batch.readings.add(topic.uid, decoded.readings)
        if decoded.units:
            batch.units.setdefault(topic.uid, {}).update(decoded.units)
        self.window.readings_added(len(decoded.readings))
        self.stats.readings += len(decoded.readings)
        self._batch_joined(message)

    def _take_event(self, message: Message, uid: str, event: DeviceEvent | Rejection) -> None:
        """Put a control event in the open batch, or report why it was refused."""
        if isinstance(event, Rejection):
            self._reject(message.topic, uid, event)
            self._ack_now(message)
            return
        self.window.open(event.at_ms).events.append(event)
        self._batch_joined(message)

    def _batch_joined(self, message: Message | None) -> None:
        """Note a message that is now in the open batch; send the batch if it should go."""
        mid = message.mid if message is not None and message.qos > 0 else None
        if self.window.joined(mid):
            self._update_backpressure()

    def _ack_now(self, message: Message) -> None:
        if message.qos > 0 and self._connection is not None:
            self._connection.ack(message.mid)

    def _reject(self, topic: str, uid: str | None, rejection: Rejection, count: int = 1) -> None:
        self.stats.rejections[rejection.reason] += count
        self._rejection_log.add(topic, rejection, count)
        if uid is not None and self._connection is not None:
            self._connection.publish(
                f"devices/{uid}/errors", encode_error(topic, rejection, at_ms=now_ms())
            )

    def _update_backpressure(self) -> None:
        if self._connection is None:
            return
        if self.window.pending_readings >= self.config.max_pending_readings:
            self._connection.pause_reading()
        else:
            self._connection.resume_reading()

    # Channel-layer side.

    async def _send_loop(self) -> None:
        """Send waiting batches while the window of unconfirmed batches has room."""
        window = self.window
        while True:
            await window.sendable.wait()
            window.sendable.clear()
            while (sending := window.next_to_send()) is not None:
                await self._send(*sending)

    async def _send(self, batch_id: str, batch: Batch) -> None:
        message = {
            "type": INGEST_BATCH,
            "batch": batch_id,
            "reply": self._reply_channel,
            "received": batch.received_ms,
            "columns": batch.readings.encode(),
        }
        if batch.units:
            message["units"] = batch.units
        if batch.events:
            message["events"] = events_encode(batch.events)
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
            if reply.get("type") == INGEST_STORED:
                self._on_stored(reply)

    def _on_stored(self, reply: dict[str, Any]) -> None:
        batch = self.window.confirmed(str(reply.get("batch")))
        if batch is None:
            return  # a late reply to a batch that was resent and confirmed already
        self.stats.batches_stored += 1
        for uid, topic, error, *reason in reply.get("rejected") or ():
            self._reject(topic, uid, Rejection(reason[0] if reason else "command_rejected", error))
        refused = reply.get("too_many_metrics")
        if refused:
            for topic, uid, rejection, count in too_many_metrics(
                list(batch.readings.rows()), batch.topics, refused, reply.get("max_metrics")
            ):
                self._reject(topic, uid, rejection, count)
        self.stats.readings_inserted += int(reply.get("inserted", 0))
        self.stats.readings_duplicate += int(reply.get("duplicates", 0))
        self.stats.unknown_device_readings += sum(dict(reply.get("unknown") or {}).values())
        # Message ids of an earlier connection mean nothing now: the broker
        # redelivers those messages, and dedup stores them once.
        if self._connection is not None and batch.generation == self.window.generation:
            self._connection.ack_many(batch.mids)
        self.window.after_confirmed()
        self._update_backpressure()

    async def _commands_loop(self) -> None:
        """Publish commands the hub hands to any bridge on the commands channel."""
        async for command in self._received(self.config.commands_channel):
            if command.get("type") not in (COMMAND_PUBLISH, ATTRIBUTES_PUBLISH):
                continue
            connected = self._connection is not None and self.connected.is_set()
            self._commands.take(command, self._connection if connected else None)

    def _on_published(self, mid: int) -> None:
        """A command reached the broker: tell the hub it is sent, inside the next batch."""
        command_id = self._commands.published(mid)
        if command_id is not None:
            at = now_ms()
            self.window.open(at).events.append(sent_event(command_id, at_ms=at))
            self._batch_joined(None)

    async def _resend_loop(self) -> None:
        while True:
            await asyncio.sleep(RESEND_CHECK_S)
            deadline = time.monotonic() - self.config.ingest_timeout_s
            for batch_id, batch in self.window.overdue(deadline):
                if batch_id in self.window.in_flight:  # not confirmed meanwhile
                    logger.warning("bridge: batch %s not confirmed; sending it again", batch_id)
                    batch.sent_at = None
                    self.stats.resends += 1
                    await self._send(batch_id, batch)
