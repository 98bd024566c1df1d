"""Hold one device's MQTT 3.1.1 connection on the asyncio event loop."""

# A small purpose-built client instead of aiomqtt: the simulator keeps hundreds of
# connections publishing tens of messages a second each. aiomqtt (paho-mqtt underneath)
# saturated a core at about 4.3 k msg/s for 100 devices here; this protocol writes each
# PUBLISH straight to the transport and runs 5 k msg/s in about 60 % of a core.

from __future__ import annotations

import asyncio
import logging
from typing import cast

from firmware_sim import packets
from firmware_sim.packets import InboundPublish, ProtocolError, Will

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 10.0  # an unanswered PUBACK/SUBACK this old means the broker is gone
HOUSEKEEPING_INTERVAL_S = 1.0
DISCONNECT_TIMEOUT_S = 2.0
MAX_QUEUED_INBOUND = 100


class MqttError(Exception):
    """Base class for this client's connection errors."""


class ConnectRefused(MqttError):
    """Raised when the broker answers CONNECT with a non-zero return code."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.reason = packets.CONNACK_REASONS.get(code, f"return code {code}")
        super().__init__(f"connection refused: {self.reason}")


class ConnectionLost(MqttError):
    """Raised when the connection closes while an operation needs it."""


class MqttConnection(asyncio.Protocol):
    """One MQTT connection: publish, subscribe, inbound messages, keepalive."""

    def __init__(self, client_id: str, keepalive: int) -> None:
        self.client_id = client_id
        self._keepalive = keepalive
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._reader = packets.PacketReader()
        self._connack: asyncio.Future[int] = self._loop.create_future()
        # The result is the reason the connection ended (None after our own disconnect);
        # it never holds an exception, so nobody has to retrieve one.
        self.closed: asyncio.Future[MqttError | None] = self._loop.create_future()
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._pending_since: dict[int, float] = {}
        self._next_packet_id = 0
        self._last_sent = self._loop.time()
        self._ping_sent_at: float | None = None
        self._housekeeping: asyncio.TimerHandle | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._disconnecting = False
        self._drop_reason: str | None = None
        self.messages: asyncio.Queue[InboundPublish] = asyncio.Queue(MAX_QUEUED_INBOUND)
        self.pings_answered = 0

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Dispatch every complete packet in the received bytes."""
        try:
            for first_byte, body in self._reader.feed(data):
                self._dispatch(first_byte, body)
        except ProtocolError as exc:
            logger.warning("%s: protocol error from broker: %s", self.client_id, exc)
            self._drop(f"protocol error: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whatever still waits on this connection."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._disconnecting:
            reason: MqttError | None = None
        elif self._drop_reason is not None:
            reason = ConnectionLost(self._drop_reason)
        elif exc is not None:
            reason = ConnectionLost(f"connection lost: {exc}")
        else:
            reason = ConnectionLost("connection closed by the broker")
        lost = reason or ConnectionLost("disconnected")
        if not self._connack.done():
            self._connack.set_exception(lost)
            self._connack.exception()  # connect() may be gone; never log it as unretrieved
        for future in self._pending.values():
            if not future.done():
                future.set_exception(lost)
        self._pending.clear()
        self._pending_since.clear()
        self._wake_writer()
        if not self.closed.done():
            self.closed.set_result(reason)

    def pause_writing(self) -> None:
        """Make QoS 0 publishers wait until the transport buffer drains."""
        if self._drain_waiter is None:
            self._drain_waiter = self._loop.create_future()

    def resume_writing(self) -> None:
        """Let waiting publishers go on."""
        self._wake_writer()

    # Public operations

    @property
    def is_open(self) -> bool:
        """Tell whether the connection can still carry packets."""
        return not self.closed.done() and not self._disconnecting

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish one message; at QoS 1 return once the broker acknowledged it."""
        self._check_open()
        if qos == 0:
            self._write(
                packets.publish_packet(topic, payload, qos=0, retain=retain, packet_id=None)
            )
            if self._drain_waiter is not None:
                await self._drain_waiter
            return
        packet_id, acked = self._expect_ack()
        self._write(
            packets.publish_packet(topic, payload, qos=qos, retain=retain, packet_id=packet_id)
        )
        await acked

    async def subscribe(self, topic: str, qos: int = 1) -> int:
        """Subscribe to one topic filter and return the granted QoS."""
        self._check_open()
        packet_id, acked = self._expect_ack()
        self._write(packets.subscribe_packet(packet_id, [(topic, min(qos, 1))]))
        body = await acked
        granted = body[2] if len(body) > 2 else packets.SUBACK_FAILURE
        if granted == packets.SUBACK_FAILURE:
            raise MqttError(f"subscription to {topic} refused")
        return granted

    async def disconnect(self) -> None:
        """Send DISCONNECT (so the broker drops the will) and close the socket."""
        if self._transport is None or self.closed.done():
            return
        if not self._disconnecting:
            self._disconnecting = True
            self._transport.write(packets.DISCONNECT_PACKET)
            self._transport.close()
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await asyncio.shield(self.closed)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the socket at once; the broker then publishes the will."""
        if self._transport is not None:
            self._transport.abort()

    # Internals

    def _drop(self, reason: str) -> None:
        """Abort the connection, remembering why for whoever waits on it."""
        if self._drop_reason is None:
            self._drop_reason = reason
        self.abort()

    def _check_open(self) -> None:
        if not self.is_open:
            raise ConnectionLost("not connected")

    def _write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)
        self._last_sent = self._loop.time()

    def _wake_writer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _expect_ack(self) -> tuple[int, asyncio.Future[bytes]]:
        for _ in range(0xFFFF):
            self._next_packet_id = self._next_packet_id % 0xFFFF + 1
            if self._next_packet_id not in self._pending:
                break
        else:
            raise MqttError("no free packet id")
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._pending[self._next_packet_id] = future
        self._pending_since[self._next_packet_id] = self._loop.time()
        return self._next_packet_id, future

    def _resolve(self, body: bytes) -> None:
        packet_id = packets.decode_packet_id(body)
        future = self._pending.pop(packet_id, None)
        self._pending_since.pop(packet_id, None)
        if future is not None and not future.done():
            future.set_result(body)

    def _dispatch(self, first_byte: int, body: bytes) -> None:
        kind = first_byte & 0xF0
        if kind in (packets.PUBACK, packets.SUBACK):
            self._resolve(body)
        elif kind == packets.PINGRESP:
            self._ping_sent_at = None
            self.pings_answered += 1
        elif kind == packets.PUBLISH:
            self._receive(packets.decode_publish(first_byte, body))
        elif kind == packets.CONNACK:
            if len(body) != 2:
                raise ProtocolError("CONNACK of wrong length")
            if not self._connack.done():
                self._connack.set_result(body[1])
        else:
            raise ProtocolError(f"unexpected packet type 0x{first_byte:02x}")

    def _receive(self, message: InboundPublish) -> None:
        if message.qos == 2:
            raise ProtocolError("QoS 2 PUBLISH, but no subscription asked for QoS 2")
        if message.packet_id is not None:
            self._write(packets.puback_packet(message.packet_id))
        try:
            self.messages.put_nowait(message)
        except asyncio.QueueFull:
            logger.warning("%s: inbound queue full, dropped %s", self.client_id, message.topic)

    def _start_housekeeping(self) -> None:
        self._housekeeping = self._loop.call_later(HOUSEKEEPING_INTERVAL_S, self._housekeep)

    def _housekeep(self) -> None:
        """Send PINGREQ when idle and drop a connection whose broker stopped answering."""
        now = self._loop.time()
        if self._ping_sent_at is not None and now - self._ping_sent_at > self._keepalive:
            self._drop(f"no PINGRESP within {self._keepalive} s")
            return
        oldest = next(iter(self._pending_since.values()), None)
        if oldest is not None and now - oldest > ACK_TIMEOUT_S:
            self._drop(f"no acknowledgement within {ACK_TIMEOUT_S:g} s")
            return
        if self._ping_sent_at is None and now - self._last_sent >= self._keepalive / 2:
            self._write(packets.PINGREQ_PACKET)
            self._ping_sent_at = now
        self._start_housekeeping()


async def connect(
    host: str,
    port: int,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    will: Will | None = None,
    keepalive: int = 60,
    clean_session: bool = True,
) -> MqttConnection:
    """Open a TCP connection, send CONNECT and return once the broker accepted it."""
    loop = asyncio.get_running_loop()
    connect_bytes = packets.connect_packet(
        client_id=client_id,
        keepalive=keepalive,
        username=username,
        password=password,
        will=will,
        clean_session=clean_session,
    )
    protocol: MqttConnection | None = None
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, protocol = await loop.create_connection(
                lambda: MqttConnection(client_id, keepalive), host, port
            )
            protocol._write(connect_bytes)
            code = await protocol._connack
    except BaseException:
        if protocol is not None:
            protocol.abort()
        raise
    assert protocol is not None
    if code != 0:
        protocol.abort()
        raise ConnectRefused(code)
    protocol._start_housekeeping()
    return protocol
