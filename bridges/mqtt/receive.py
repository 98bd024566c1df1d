"""paho with a faster receive path: buffered reads, PUBLISH decoded in place, PUBACKs in bulk.

paho reads a packet with three or more `recv` calls (command byte, each byte of
the remaining length, then the body), builds a Properties object for every
MQTT 5 PUBLISH and an MQTTMessage, and matches its topic against the callback
filters; each acknowledgement is a packet of its own. At thousands of messages
per second that was most of the bridge's CPU (issue 17). Here the socket is
read in large chunks into a buffer; complete QoS 0/1 PUBLISH packets at its
head are decoded straight from it (topic, packet id, payload; MQTT 5
properties skipped, as the bridge reads none) and handed over as `Incoming`;
anything else (CONNACK, SUBACK, PUBACK of commands, PINGRESP, a packet not
wholly buffered yet, an invalid topic) goes through paho's own reader, whose
reads the buffer serves first. A stored batch's PUBACKs leave as one write.

This leans on paho 2.x internals (`_sock_recv`, `_in_packet`, `_packet_queue`,
`_last_bytes_received`); tests/bridges/test_receive.py checks the fast path is
taken, so an upgrade that moves them fails there rather than slowing down quietly.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

READ_CHUNK = 1 << 16
_PUBLISH = 0x30
_PUBACK = 0x40
_puback = struct.Struct("!BBH").pack


class Incoming:
    """A received PUBLISH: what the bridge reads of paho's MQTTMessage, and nothing more."""

    __slots__ = ("mid", "payload", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes, qos: int, mid: int, retain: bool) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.mid = mid
        self.retain = retain


class BridgeClient(paho.Client):
    """A paho client whose PUBLISH packets reach `on_incoming` without paho's per-message work."""

    def __init__(self, *args: Any, on_incoming: Callable[[Incoming], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inbuf = bytearray()
        self._on_incoming = on_incoming
        self._packets_in = 0
        # Set while the bridge holds off reading (backpressure): read_packets stops.
        self.paused = False
        # PUBLISH packets decoded here, not by paho (tests read it).
        self.fast_publishes = 0

    def buffered(self) -> bool:
        """Tell whether received bytes wait here or in TLS (the socket will not signal them)."""
        if self._inbuf:
            return True
        sock = self._sock
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def _sock_recv(self, bufsize: int) -> bytes:
        buf = self._inbuf
        if not buf:
            data = super()._sock_recv(READ_CHUNK)
            if len(data) <= bufsize:
                return data
            buf += data
        chunk = bytes(buf[:bufsize])
        del buf[:bufsize]
        return chunk

    def _packet_handle(self) -> MQTTErrorCode:
        self._packets_in += 1
        return super()._packet_handle()

    def read_packets(self, limit: int) -> MQTTErrorCode:
        """Handle up to `limit` packets that have arrived; stop early when paused or out of data."""
        buf = self._inbuf
        handled = 0
        fast = 0
        try:
            while handled < limit and not self.paused:
                at_boundary = self._in_packet["command"] == 0
                if not buf and at_boundary:
                    try:
                        data = super()._sock_recv(READ_CHUNK)
                    except BlockingIOError:
                        break  # nothing more on the socket for now
                    except OSError:
                        data = b""
                    if not data:
                        # Closed or failed: paho's reader meets the same and reports it.
                        return self.loop_read()
                    buf += data
                if at_boundary and self._take_publish(buf):
                    handled += 1
                    fast += 1
                    continue
                before = self._packets_in
                result = self.loop_read()
                if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return result
                if self._packets_in == before and not buf:
                    break  # nothing more on the socket for now
                handled += 1
        finally:
            if fast:
                self.fast_publishes += fast
                self._last_bytes_received = paho.time_func()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _take_publish(self, buf: bytearray) -> bool:
        """Deliver the whole QoS 0/1 PUBLISH at the buffer's head; False leaves it to paho."""
        command = buf[0]
        qos = (command >> 1) & 3
        if command & 0xF0 != _PUBLISH or qos > 1:
            return False
        size = len(buf)
        remaining = 0
        shift = 0
        pos = 1
        while True:
            if pos >= size or pos > 4:
                return False  # header not all here yet (or malformed: paho says so)
            byte = buf[pos]
            pos += 1
            remaining |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        end = pos + remaining
        if end > size:
            return False  # the rest is still on its way
        topic_end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1]) if remaining >= 2 else end + 1
        if topic_end == pos + 2 or topic_end > end:
            return False  # empty topic (an alias) or malformed: paho's path
        try:
            topic = buf[pos + 2 : topic_end].decode()
        except UnicodeDecodeError:
            return False
        pos = topic_end
        mid = 0
        if qos:
            if pos + 2 > end:
                return False
            mid = (buf[pos] << 8) | buf[pos + 1]
            pos += 2
        if self._protocol == paho.MQTTv5:
            length = 0
            shift = 0
            while True:
                if pos >= end or shift > 21:
                    return False
                byte = buf[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            pos += length
            if pos > end:
                return False
        payload = bytes(buf[pos:end])
        del buf[:end]
        self._on_incoming(Incoming(topic, payload, qos, mid, bool(command & 1)))
        return True

    def ack_many(self, mids: Iterable[int]) -> None:
        """Acknowledge QoS 1 messages with one queued write of all their PUBACKs."""
        packet = b"".join([_puback(_PUBACK, 2, mid) for mid in mids])
        if packet:
            self._packet_queue(_PUBACK, packet, 0, 0)
