"""Embedded broker limits over real sockets: CONNECT deadline, sockets, packet size, backlog."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import psutil
import pytest

from bridges.mqtt.broker import ConnectionLimits, DeviceGrant, EmbeddedBroker
from bridges.mqtt.broker_guard import CLIENT_BACKLOG_PACKETS
from tests.security.mqtt import Probe, ThreadedBroker, settle
from tests.support import free_port, wait_until

TOKENS = {"dev-a": "token-a", "dev-b": "token-b"}
BRIDGE = ("hub-bridge", "bridge-secret")
LIMITS = ConnectionLimits(
    max_connections=8,
    connect_timeout_s=1.0,
    max_packet_bytes=64 * 1024,
    max_subscriptions=4,
    max_queued_messages=200,
    max_queued_bytes=1 << 20,
)


async def check(uid: str, token: str) -> DeviceGrant | None:
    return DeviceGrant(1, token) if TOKENS.get(uid) == token else None


def running(limits: ConnectionLimits) -> ThreadedBroker:
    return ThreadedBroker(
        EmbeddedBroker(
            authenticate=check,
            bridge_username=BRIDGE[0],
            bridge_password=BRIDGE[1],
            port=free_port(),
            limits=limits,
        )
    )


@pytest.fixture
def broker() -> Iterator[ThreadedBroker]:
    with running(LIMITS) as started:
        yield started


def varint(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def text(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(uid: str, token: str, *, keepalive: int = 60) -> bytes:
    """A MQTT 3.1.1 CONNECT: clean session, username and password."""
    body = text("MQTT") + bytes([4, 0xC2]) + keepalive.to_bytes(2, "big")
    body += text(uid) + text(uid) + text(token)
    return b"\x10" + varint(len(body)) + body


def raw(port: int, *, small: bool = False) -> socket.socket:
    sock = socket.socket()
    if small:  # a client that reads nothing fills this at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def connected(
    port: int, uid: str = "dev-a", *, small: bool = False, keepalive: int = 60
) -> socket.socket:
    sock = raw(port, small=small)
    sock.sendall(connect_packet(uid, TOKENS[uid], keepalive=keepalive))
    assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK accepted
    return sock


def squeeze(broker: ThreadedBroker, uid: str) -> None:
    """Shrink the broker's socket buffer towards a device: what it sends backs up at once."""
    reader = broker.broker.sessions[uid][0].attributes["hub.reader"]
    server = reader.transport.get_extra_info("socket")
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


def closed_by_broker(sock: socket.socket, within: float) -> bool:
    """Return whether the broker closes the socket within `within` seconds (reading what comes)."""
    deadline = time.monotonic() + within
    with contextlib.suppress(ConnectionResetError):
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                if sock.recv(65536) == b"":
                    return True
            except TimeoutError:
                return False
        return False
    return True


def device(port: int, uid: str = "dev-a") -> Probe:
    client = Probe(port, uid, TOKENS[uid], client_id=uid, protocol=4)
    assert client.connect()
    return client


def listener(port: int, topic: str = "devices/+/telemetry") -> Probe:
    client = Probe(port, *BRIDGE, client_id="hub-bridge", protocol=4)
    assert client.connect()
    assert client.subscribe(topic)
    return client


def test_a_socket_that_sends_no_connect_is_closed_after_the_timeout(broker):
    sock = raw(broker.port)
    started = time.monotonic()
    assert closed_by_broker(sock, 5)
    assert time.monotonic() - started >= LIMITS.connect_timeout_s * 0.9
    wait_until(lambda: broker.broker.stats.refused["connect_timeout"] == 1, message="counted")
    sock.close()


def test_a_connect_sent_a_byte_at_a_time_is_cut_at_the_deadline(broker):
    # Slowloris: each byte comes well within any per-read timeout; the whole never does.
    packet = connect_packet("dev-a", "token-a")
    sock = raw(broker.port)
    started = time.monotonic()
    with contextlib.suppress(OSError):
        for byte in packet:
            sock.send(bytes([byte]))
            time.sleep(LIMITS.connect_timeout_s / 8)
    assert closed_by_broker(sock, 2)
    assert time.monotonic() - started < LIMITS.connect_timeout_s + 2
    sock.close()


def test_connections_past_the_cap_are_refused_and_the_ones_in_are_unharmed(broker):
    hub = listener(broker.port)
    dev = device(broker.port)
    idle = [raw(broker.port) for _ in range(LIMITS.max_connections - 2)]
    wait_until(lambda: broker.broker.connections == LIMITS.max_connections, message="cap")
    refused = [raw(broker.port) for _ in range(5)]
    for sock in refused:
        assert sock.recv(4) == b"\x20\x02\x00\x03"  # CONNACK: server unavailable
        assert closed_by_broker(sock, 2)
    wait_until(lambda: broker.broker.stats.refused["max_connections"] == 5, message="counted")
    assert dev.publish("devices/dev-a/telemetry", b'{"x": 1}')
    wait_until(lambda: hub.messages, message="the connected device's reading")
    for sock in idle + refused:
        sock.close()
    wait_until(lambda: broker.broker.connections == 2, message="idle sockets released")
    again = raw(broker.port)
    again.sendall(connect_packet("dev-b", "token-b"))
    assert again.recv(4) == b"\x20\x02\x00\x00"
    again.close()
    dev.close()
    hub.close()


def test_a_socket_closed_by_the_client_leaves_no_close_wait_behind(broker):
    mine = psutil.Process()

    def close_wait() -> list[object]:
        return [
            conn
            for conn in mine.net_connections(kind="tcp")
            if conn.laddr
            and conn.laddr.port == broker.port
            and conn.status == psutil.CONN_CLOSE_WAIT
        ]

    quiet = [raw(broker.port) for _ in range(3)]
    partial = [raw(broker.port) for _ in range(3)]
    for sock in partial:
        sock.sendall(connect_packet("dev-a", "token-a")[:7])
    wait_until(lambda: broker.broker.connections == 6, message="six sockets accepted")
    for sock in quiet + partial:
        sock.close()
    # Well before the CONNECT timeout would close them anyway.
    wait_until(lambda: not close_wait(), timeout=LIMITS.connect_timeout_s / 2, message="reclaimed")
    assert broker.broker.connections == 0


def test_a_packet_over_the_limit_is_refused_before_its_body_is_read(broker):
    hub = listener(broker.port)
    sock = connected(broker.port)
    topic = text("devices/dev-a/telemetry")
    body_length = 200 * 1024 * 1024
    sock.sendall(b"\x30" + varint(len(topic) + body_length) + topic)
    # The header alone is enough: the broker closes without waiting for 200 MB.
    assert closed_by_broker(sock, 2)
    wait_until(lambda: broker.broker.stats.closed["packet_refused"] == 1, message="counted")
    sock.close()
    # A packet within the limit passes.
    dev = device(broker.port)
    payload = b'{"x": "' + b"y" * (LIMITS.max_packet_bytes - 100) + b'"}'
    assert dev.publish("devices/dev-a/telemetry", payload)
    wait_until(lambda: hub.messages, message="a packet just under the limit")
    dev.close()
    hub.close()


def test_an_oversize_or_malformed_connect_is_refused(broker):
    sock = raw(broker.port)
    sock.sendall(b"\x10" + varint(100 * 1024 * 1024))
    assert closed_by_broker(sock, 2)
    sock.close()
    sock = raw(broker.port)
    sock.sendall(b"\x10\xff\xff\xff\xff\xff")  # a remaining length of five bytes
    assert closed_by_broker(sock, 2)
    sock.close()
    wait_until(lambda: broker.broker.stats.refused["packet_refused"] == 2, message="two refusals")


def test_a_client_silent_past_its_keep_alive_is_disconnected(broker):
    sock = connected(broker.port, keepalive=1)
    started = time.monotonic()
    assert closed_by_broker(sock, 5)
    assert time.monotonic() - started >= 1.0
    sock.close()


def test_a_device_holds_a_bounded_number_of_subscriptions(broker):
    dev = device(broker.port)
    for index in range(LIMITS.max_subscriptions):
        assert dev.subscribe(f"devices/dev-a/x{index}")
    assert not dev.subscribe("devices/dev-a/one-too-many")
    assert dev.subscribe("devices/dev-a/x0")  # held already: still granted
    dev.client.unsubscribe("devices/dev-a/x1")
    wait_until(lambda: dev.subscribe("devices/dev-a/replacement"), message="room after UNSUBSCRIBE")
    dev.close()


def test_a_subscribe_flood_from_a_client_that_never_reads_stops_being_read(broker):
    sock = connected(broker.port)
    sock.setblocking(False)
    # SUBSCRIBE packet id 1 to "#" (refused: not the device's): the broker answers each
    # with a SUBACK this client never reads.
    packet = b"\x82" + varint(2 + 3 + 1) + b"\x00\x01" + text("#") + b"\x01"
    burst = packet * 1000
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sent < 2_000_000:
        try:
            sent += sock.send(burst) // len(packet)
        except BlockingIOError:
            time.sleep(0.01)
    handler = broker.broker.sessions["dev-a"][1]
    # The broker stopped reading: the client could not push all it wanted, and what the
    # broker read but has not handled stays bounded.
    assert sent < 2_000_000
    assert handler.queued() <= 2 * CLIENT_BACKLOG_PACKETS
    sock.close()


def test_a_device_publishes_only_its_device_to_hub_topics(broker):
    dev = device(broker.port)
    assert dev.subscribe("devices/dev-a/#")  # its own topics come back to it
    allowed = [
        "devices/dev-a/telemetry",
        "devices/dev-a/senml",
        "devices/dev-a/status",
        "devices/dev-a/commands/c1/reply",
        "devices/dev-a/attributes/reported",
    ]
    for topic in allowed:
        dev.publish(topic, b"{}")
    for topic in ("devices/dev-a/commands/c1", "devices/dev-a/errors", "devices/dev-a/other"):
        dev.publish(topic, b"{}")
    wait_until(lambda: len(dev.messages) >= len(allowed), message="the allowed topics")
    settle()
    assert sorted(topic for topic, _ in dev.messages) == sorted(allowed)
    dev.close()


def test_a_device_may_not_retain_on_its_commands_topics(broker):
    dev = device(broker.port)
    dev.client.publish("devices/dev-a/commands/c1/reply", b'{"ok": true}', qos=1, retain=True)
    dev.client.publish("devices/dev-a/status", b"online", qos=1, retain=True)
    hub = listener(broker.port, "devices/+/status")
    wait_until(lambda: hub.messages, message="the retained status")
    later = device(broker.port, "dev-a")
    assert later.subscribe("devices/dev-a/#")
    wait_until(lambda: later.messages, message="dev-a's own retained messages")
    settle()
    assert [topic for topic, _ in later.messages] == ["devices/dev-a/status"]
    assert broker.broker.stats.publishes_refused["retain"] == 1
    later.close()
    hub.close()


def test_a_second_connection_with_a_client_id_takes_the_first_ones_place(broker):
    first = device(broker.port)
    second = device(broker.port)
    assert first.closed.wait(2), "two live connections under one client id"
    assert not second.closed.is_set()
    second.close()


def test_a_silent_client_that_stopped_reading_is_still_disconnected(broker):
    # Its own messages come back to it and back up in the broker; then it says nothing
    # more. Closing must not wait for it to read.
    sock = connected(broker.port, keepalive=1, small=True)
    squeeze(broker, "dev-a")
    own = text("devices/dev-a/#")
    sock.sendall(b"\x82" + varint(2 + len(own) + 1) + b"\x00\x01" + own + b"\x00")
    assert sock.recv(5) == b"\x90\x03\x00\x01\x00"  # SUBACK
    body = text("devices/dev-a/telemetry") + b"x" * 30_000
    sock.settimeout(2)
    with contextlib.suppress(OSError):
        for _ in range(100):
            sock.sendall(b"\x30" + varint(len(body)) + body)
    wait_until(lambda: broker.broker.connections == 0, timeout=10, message="the socket dropped")
    sock.close()


def test_a_qos1_flood_from_a_client_that_never_reads_its_pubacks_stops_being_read(broker):
    sock = connected(broker.port, small=True)
    squeeze(broker, "dev-a")
    handler = broker.broker.sessions["dev-a"][1]
    topic = text("devices/dev-a/telemetry")
    packets = b"".join(
        b"\x32" + varint(len(topic) + 2 + 2) + topic + (n % 65535 + 1).to_bytes(2, "big") + b"{}"
        for n in range(1000)
    )
    sock.setblocking(False)
    sent, peak = 0, 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and sent < 400_000:
        try:
            sent += sock.send(packets) * 1000 // len(packets)
        except BlockingIOError:
            time.sleep(0.01)
        peak = max(peak, handler.writing)
    # Its PUBACKs could not be written: the broker stopped reading it instead of holding
    # a task (and the message) for each one.
    assert peak <= 2 * CLIENT_BACKLOG_PACKETS
    sock.close()


def test_a_packet_left_unfinished_after_connect_is_cut_at_the_keep_alive(broker):
    sock = connected(broker.port, keepalive=1)
    topic = text("devices/dev-a/telemetry")
    sock.sendall(b"\x30" + varint(len(topic) + 10_000) + topic + b"x" * 5_000)
    started = time.monotonic()
    assert closed_by_broker(sock, 6)
    assert time.monotonic() - started < 5
    sock.close()


def test_messages_for_a_device_that_stopped_reading_are_bounded(broker):
    sock = connected(broker.port, keepalive=0)  # no keep-alive: nothing disconnects it
    commands = text("devices/dev-a/commands/+")
    sock.sendall(b"\x82" + varint(2 + len(commands) + 1) + b"\x00\x01" + commands + b"\x00")
    assert sock.recv(5) == b"\x90\x03\x00\x01\x00"  # SUBACK; from now on it reads nothing
    hub = Probe(broker.port, *BRIDGE, client_id="hub-bridge", protocol=4)
    assert hub.connect()
    payload = b"x" * 10_000
    for index in range(1500):
        hub.publish(f"devices/dev-a/commands/c{index}", payload, qos=0)
    assert hub.publish("devices/dev-a/commands/last", b"{}", qos=1)  # the others are in
    handler = broker.broker.sessions["dev-a"][1]
    wait_until(lambda: broker.broker.stats.deliveries_dropped > 0, message="drops")
    assert handler.outgoing <= LIMITS.max_queued_messages
    assert handler.outgoing_bytes <= LIMITS.max_queued_bytes + len(payload)
    hub.close()
    sock.close()
