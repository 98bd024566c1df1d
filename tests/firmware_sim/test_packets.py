"""Unit tests of the MQTT 3.1.1 packet codec."""

from __future__ import annotations

import pytest

from firmware_sim import packets
from firmware_sim.packets import PacketReader, ProtocolError, Will


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_uses_the_spec_encoding(length: int, encoded: bytes) -> None:
    assert packets.encode_remaining_length(length) == encoded


def test_remaining_length_beyond_four_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        packets.encode_remaining_length(268_435_456)


@pytest.mark.parametrize("size", [0, 1, 120, 200, 20_000, 3_000_000])
def test_reader_returns_a_publish_fed_one_chunk_at_a_time(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    data = packets.publish_packet("devices/a/telemetry", payload, qos=1, retain=True, packet_id=7)
    reader = PacketReader()
    chunk = max(1, len(data) // 17)
    found = []
    for start in range(0, len(data), chunk):
        found += reader.feed(data[start : start + chunk])
    assert len(found) == 1
    first, body = found[0]
    message = packets.decode_publish(first, body)
    assert message == packets.InboundPublish("devices/a/telemetry", payload, 1, True, 7)


def test_reader_splits_coalesced_packets() -> None:
    data = packets.puback_packet(1) + packets.PINGREQ_PACKET + packets.puback_packet(513)
    assert PacketReader().feed(data) == [
        (packets.PUBACK, b"\x00\x01"),
        (0xC0, b""),
        (packets.PUBACK, b"\x02\x01"),
    ]


def test_reader_rejects_a_five_byte_remaining_length() -> None:
    with pytest.raises(ProtocolError):
        PacketReader().feed(b"\x30\xff\xff\xff\xff\x01")


def test_connect_packet_carries_client_id_credentials_and_retained_will() -> None:
    data = packets.connect_packet(
        client_id="sim-0001",
        keepalive=30,
        username="sim-0001",
        password="s3cret",
        will=Will("devices/sim-0001/status", b"offline", qos=1, retain=True),
    )
    (first, body), *_ = PacketReader().feed(data)
    assert first == packets.CONNECT
    assert body[:7] == b"\x00\x04MQTT\x04"
    flags = body[7]
    assert flags == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert body[8:10] == b"\x00\x1e"
    assert body[10:] == (
        packets.encode_string("sim-0001")
        + packets.encode_string("devices/sim-0001/status")
        + packets.encode_string(b"offline")
        + packets.encode_string("sim-0001")
        + packets.encode_string("s3cret")
    )


def test_connect_packet_without_password_sets_only_the_user_name_flag() -> None:
    data = packets.connect_packet(client_id="sim-0001", keepalive=60, username="sim-0001")
    (_, body), *_ = PacketReader().feed(data)
    assert body[7] == 0x80 | 0x02


def test_publish_at_qos0_has_no_packet_id() -> None:
    data = packets.publish_packet("t", b"{}", qos=0, retain=False, packet_id=None)
    assert data == b"\x30\x05\x00\x01t{}"


def test_publish_refuses_qos2_and_missing_packet_id() -> None:
    with pytest.raises(ValueError, match="QoS"):
        packets.publish_packet("t", b"", qos=2, retain=False, packet_id=1)
    with pytest.raises(ValueError, match="packet id"):
        packets.publish_packet("t", b"", qos=1, retain=False, packet_id=None)


def test_subscribe_packet_lists_filters_with_their_qos() -> None:
    data = packets.subscribe_packet(9, [("devices/a/commands/+", 1)])
    assert data[0] == 0x82
    (_, body), *_ = PacketReader().feed(data)
    assert body == b"\x00\x09" + packets.encode_string("devices/a/commands/+") + b"\x01"


def test_truncated_publish_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        packets.decode_publish(0x32, b"\x00\x05ab")
