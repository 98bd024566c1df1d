"""Encode and decode the MQTT 3.1.1 packets a simulated device needs; pure, no I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82  # the low nibble 0b0010 is mandatory for SUBSCRIBE
SUBACK = 0x90
PINGREQ_PACKET = b"\xc0\x00"
PINGRESP = 0xD0
DISCONNECT_PACKET = b"\xe0\x00"

PROTOCOL_LEVEL_311 = 4
MAX_REMAINING_LENGTH = 268_435_455  # four varint bytes, MQTT 3.1.1 §2.2.3
SUBACK_FAILURE = 0x80

CONNACK_REASONS = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class ProtocolError(Exception):
    """Raised for bytes that break the MQTT 3.1.1 framing rules."""


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for a client whose connection breaks."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class InboundPublish:
    """A PUBLISH packet received from the broker."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int | None


def encode_remaining_length(length: int) -> bytes:
    """Encode a remaining length as the MQTT variable-length integer."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length out of range: {length}")
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


def encode_string(value: str | bytes) -> bytes:
    """Encode a UTF-8 string or binary field with its two-byte length prefix."""
    data = value.encode() if isinstance(value, str) else value
    if len(data) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return struct.pack("!H", len(data)) + data


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_remaining_length(len(body)) + body


def connect_packet(
    *,
    client_id: str,
    keepalive: int,
    username: str | None = None,
    password: str | None = None,
    will: Will | None = None,
    clean_session: bool = True,
) -> bytes:
    """Build a CONNECT packet."""
    if password is not None and username is None:
        raise ValueError("MQTT 3.1.1 allows a password only with a user name")
    flags = 0x02 if clean_session else 0
    payload = encode_string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += encode_string(will.topic) + encode_string(will.payload)
    if username is not None:
        flags |= 0x80
        payload += encode_string(username)
    if password is not None:
        flags |= 0x40
        payload += encode_string(password)
    header = encode_string("MQTT") + struct.pack("!BBH", PROTOCOL_LEVEL_311, flags, keepalive)
    return _packet(CONNECT, header + payload)


def publish_packet(
    topic: str, payload: bytes, *, qos: int, retain: bool, packet_id: int | None
) -> bytes:
    """Build a PUBLISH packet (QoS 0 or 1)."""
    if qos not in (0, 1):
        raise ValueError(f"unsupported QoS {qos}")
    if (packet_id is None) != (qos == 0):
        raise ValueError("QoS 1 needs a packet id and QoS 0 must not have one")
    body = encode_string(topic)
    if packet_id is not None:
        body += struct.pack("!H", packet_id)
    return _packet(PUBLISH | (qos << 1) | int(retain), body + payload)


def puback_packet(packet_id: int) -> bytes:
    """Build a PUBACK packet."""
    return _packet(PUBACK, struct.pack("!H", packet_id))


def subscribe_packet(packet_id: int, topics: list[tuple[str, int]]) -> bytes:
    """Build a SUBSCRIBE packet for (topic filter, maximum QoS) pairs."""
    if not topics:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    body = struct.pack("!H", packet_id)
    for topic, qos in topics:
        body += encode_string(topic) + bytes((qos,))
    return _packet(SUBSCRIBE, body)


def decode_publish(first_byte: int, body: bytes) -> InboundPublish:
    """Decode the body of a received PUBLISH packet."""
    qos = (first_byte >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    if len(body) < 2:
        raise ProtocolError("PUBLISH too short")
    (topic_len,) = struct.unpack_from("!H", body)
    pos = 2 + topic_len
    try:
        topic = body[2:pos].decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError("PUBLISH topic is not UTF-8") from exc
    packet_id = None
    if qos:
        if len(body) < pos + 2:
            raise ProtocolError("PUBLISH too short for its packet id")
        (packet_id,) = struct.unpack_from("!H", body, pos)
        pos += 2
    elif len(body) < pos:
        raise ProtocolError("PUBLISH too short for its topic")
    return InboundPublish(topic, bytes(body[pos:]), qos, bool(first_byte & 0x01), packet_id)


def decode_packet_id(body: bytes) -> int:
    """Return the packet id that starts a PUBACK or SUBACK body."""
    if len(body) < 2:
        raise ProtocolError("packet too short for a packet id")
    return int.from_bytes(body[:2], "big")


class PacketReader:
    """Split a byte stream into (first byte, body) packets, however it is chunked."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add received bytes and return every packet that is now complete."""
        self._buffer += data
        buf = self._buffer
        packets: list[tuple[int, bytes]] = []
        start = 0
        while len(buf) - start >= 2:
            length = 0
            multiplier = 1
            pos = start + 1
            while True:
                if pos >= len(buf):
                    del buf[:start]
                    return packets
                byte = buf[pos]
                length += (byte & 0x7F) * multiplier
                pos += 1
                if not byte & 0x80:
                    break
                multiplier *= 128
                if multiplier > 128**3:
                    raise ProtocolError("remaining length longer than four bytes")
            end = pos + length
            if end > len(buf):
                break
            packets.append((buf[start], bytes(buf[pos:end])))
            start = end
        del buf[:start]
        return packets
