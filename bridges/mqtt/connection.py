"""Drive a paho-mqtt client from an asyncio event loop (no extra thread).

paho's own loop costs one thread; the bridge shares the event loop with the
channel layer and, under `hub serve`, with Daphne and the broker. paho's
external-loop hooks (`loop_read`, `loop_write`, `loop_misc`) let the event loop
watch the socket instead.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bridges.mqtt.config import BridgeConfig
from bridges.mqtt.receive import BridgeClient, Incoming

logger = logging.getLogger(__name__)

MISC_INTERVAL_S = 1.0
READ_BURST = 512
CONNECT_TIMEOUT_S = 10.0
SOCKET_BUFFER_BYTES = 1 << 20


class ConnectionLost(Exception):
    """The broker connection failed or closed."""


class MqttConnection:
    """One paho client on the running event loop; `connect` once, `wait_closed` to watch it."""

    def __init__(
        self,
        config: BridgeConfig,
        on_message: Callable[[Incoming | paho.MQTTMessage], None],
    ) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closed: asyncio.Future[str] = self.loop.create_future()
        self._connected: asyncio.Future[None] = self.loop.create_future()
        self._reading = True
        self._sock: Any = None
        self._misc: asyncio.TimerHandle | None = None
        protocol = paho.MQTTv5 if config.protocol == 5 else paho.MQTTv311
        # PUBLISH packets reach on_message as Incoming; the rare one paho decodes
        # itself (see bridges/mqtt/receive.py) as its MQTTMessage.
        self.client = BridgeClient(
            on_incoming=on_message,
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=protocol,
            clean_session=None if protocol == paho.MQTTv5 else False,
            manual_ack=True,
            reconnect_on_failure=False,
        )
        # Bound paho's outgoing queue of unacknowledged publishes (error reports).
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(10_000)
        if config.broker.username is not None:
            self.client.username_pw_set(config.broker.username, config.broker.password)
        if config.broker.tls:
            self.client.tls_set_context(ssl.create_default_context())
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

        def deliver(_client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
            on_message(message)

        self.client.on_message = deliver
        self.client.on_subscribe = self._on_subscribe
        self.on_published: Callable[[int], None] | None = None
        self.client.on_publish = self._on_publish
        self.client.on_socket_open = self._on_socket_open
        self.client.on_socket_close = self._on_socket_close
        self.client.on_socket_register_write = self._on_register_write
        self.client.on_socket_unregister_write = self._on_unregister_write

    async def connect(self) -> None:
        """Connect with a persistent session and wait for the CONNACK."""
        config = self.config
        properties = None
        if config.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = config.session_expiry_s
            properties.ReceiveMaximum = min(config.receive_maximum, 65_535)
        # paho's connect blocks on DNS and TCP connect: keep it off the event loop.
        try:
            await self.loop.run_in_executor(
                None,
                lambda: self.client.connect(
                    config.broker.host,
                    config.broker.port,
                    keepalive=config.keepalive_s,
                    clean_start=False if config.protocol == 5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                    properties=properties,
                ),
            )
        except (OSError, ValueError) as error:
            raise ConnectionLost(
                f"cannot reach {config.broker.host}:{config.broker.port}: {error}"
            ) from None
        self._misc = self.loop.call_later(MISC_INTERVAL_S, self._run_misc)
        closed: asyncio.Future[Any] = asyncio.ensure_future(asyncio.shield(self._closed))
        connected: asyncio.Future[Any] = self._connected
        try:
            done, _ = await asyncio.wait(
                {connected, closed},
                timeout=CONNECT_TIMEOUT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            closed.cancel()
        if self._connected in done and self._connected.exception() is None:
            return
        self.close()
        if self._connected.done() and self._connected.exception() is not None:
            raise ConnectionLost(str(self._connected.exception()))
        raise ConnectionLost("no CONNACK from the broker")

    def subscribe(self, filters: list[str], qos: int = 1) -> None:
        """Subscribe to topic filters."""
        result, _ = self.client.subscribe([(topic, qos) for topic in filters])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionLost(f"subscribe failed: {paho.error_string(result)}")

    def publish(self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False) -> int:
        """Queue a publish; it leaves when the socket is writable. Return its message id."""
        return int(self.client.publish(topic, payload, qos=qos, retain=retain).mid)

    def ack(self, mid: int) -> None:
        """Acknowledge one QoS 1 message."""
        self.client.ack(mid, 1)

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages in one write (a stored batch's)."""
        self.client.ack_many(mids)

    def pause_reading(self) -> None:
        """Stop reading from the broker: TCP backpressure while the hub catches up."""
        if self._reading and self._sock is not None:
            self.loop.remove_reader(self._sock)
        self._reading = False
        self.client.paused = True

    def resume_reading(self) -> None:
        """Read from the broker again."""
        if not self._reading and self._sock is not None:
            self.loop.add_reader(self._sock, self._read)
            if self.client.buffered():
                # Bytes read before the pause: the socket will not announce them again.
                self.loop.call_soon(self._read)
        self._reading = True
        self.client.paused = False

    async def wait_closed(self) -> str:
        """Return the reason once the connection is gone."""
        return await asyncio.shield(self._closed)

    async def disconnect(self) -> None:
        """Say goodbye to the broker; the persistent session keeps unacknowledged messages."""
        if not self._closed.done():
            self.client.disconnect()
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), 5)
            except TimeoutError:
                self.close()

    def close(self) -> None:
        """Drop the connection at once."""
        if self._misc is not None:
            self._misc.cancel()
        sock = self.client.socket()
        if sock is not None:
            self._on_socket_close(self.client, None, sock)
            sock.close()
        if not self._closed.done():
            self._closed.set_result("closed")

    # paho callbacks, all on the event loop thread except socket_open during connect.

    def _on_connect(
        self, _client: paho.Client, _userdata: Any, flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if self._connected.done():
            return
        if reason.is_failure:
            self._connected.set_exception(ConnectionLost(f"broker refused: {reason}"))
        else:
            logger.info(
                "mqtt: connected to %s:%s (session present: %s)",
                self.config.broker.host,
                self.config.broker.port,
                flags.session_present,
            )
            self._connected.set_result(None)

    def _on_subscribe(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _props: Any,
    ) -> None:
        failed = [str(reason) for reason in reasons if reason.is_failure]
        if failed:
            logger.error("mqtt: subscription refused: %s", ", ".join(failed))
        else:
            logger.info("mqtt: subscribed (%d filters)", len(reasons))

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, _reason: Any, _props: Any
    ) -> None:
        if self.on_published is not None:
            self.on_published(mid)

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if self._misc is not None:
            self._misc.cancel()
        if not self._closed.done():
            self._closed.set_result(str(reason))

    def _call_in_loop(self, function: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            function(*args)
        else:
            self.loop.call_soon_threadsafe(function, *args)

    def _on_socket_open(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
            # No Nagle: a command written right after a PUBACK would wait ~40 ms for
            # the broker's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        if self._reading:
            self._call_in_loop(self.loop.add_reader, sock, self._read)

    def _on_socket_close(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        # Synchronously: the descriptor is closed right after this returns.
        self.loop.remove_reader(sock)
        self.loop.remove_writer(sock)
        self._sock = None

    def _on_register_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._call_in_loop(self.loop.add_writer, sock, self._write)

    def _on_unregister_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._call_in_loop(self.loop.remove_writer, sock)

    def _read(self) -> None:
        # Up to READ_BURST packets per wake-up, then let the loop run other work; what is
        # left in the client's buffer is not announced by the socket, so come back for it.
        if not self._reading or self._sock is None:
            return
        result = self.client.read_packets(READ_BURST)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._check(result)
            return
        if self._reading and self.client.buffered():
            self.loop.call_soon(self._read)

    def _write(self) -> None:
        self._check(self.client.loop_write())

    def _run_misc(self) -> None:
        self._check(self.client.loop_misc())
        if not self._closed.done():
            self._misc = self.loop.call_later(MISC_INTERVAL_S, self._run_misc)

    def _check(self, result: MQTTErrorCode) -> None:
        if result not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            if not self._closed.done():
                self._closed.set_result(paho.error_string(result))
            self.close()
