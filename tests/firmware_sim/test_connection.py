"""The MQTT connection against a scripted fake broker: dead-broker detection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from firmware_sim import connection, packets
from firmware_sim.connection import ConnectionLost, ConnectRefused, connect
from tests.firmware_sim.helpers import wait_until


@contextlib.asynccontextmanager
async def fake_broker(connack_code: int = 0, answer_pings: bool = False) -> AsyncIterator[int]:
    """Accept one client, answer CONNECT, then ignore everything (a hung broker)."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        parser = packets.PacketReader()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                for first_byte, _ in parser.feed(data):
                    if first_byte == packets.CONNECT:
                        writer.write(bytes((packets.CONNACK, 2, 0, connack_code)))
                    elif first_byte == 0xC0 and answer_pings:
                        writer.write(bytes((packets.PINGRESP, 0)))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_unacknowledged_publish_drops_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "ACK_TIMEOUT_S", 0.2)
    monkeypatch.setattr(connection, "HOUSEKEEPING_INTERVAL_S", 0.05)
    async with fake_broker() as port:
        conn = await connect("127.0.0.1", port, client_id="hung-ack")
        with pytest.raises(ConnectionLost, match="no acknowledgement"):
            async with asyncio.timeout(5):
                await conn.publish("devices/hung-ack/telemetry", b"{}", qos=1)
        assert isinstance(conn.closed.result(), ConnectionLost)


async def test_unanswered_ping_drops_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "HOUSEKEEPING_INTERVAL_S", 0.05)
    async with fake_broker() as port:
        conn = await connect("127.0.0.1", port, client_id="hung-ping", keepalive=1)
        async with asyncio.timeout(5):
            reason = await conn.closed
        assert isinstance(reason, ConnectionLost)
        assert "no PINGRESP" in str(reason)


async def test_answered_pings_keep_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "HOUSEKEEPING_INTERVAL_S", 0.05)
    async with fake_broker(answer_pings=True) as port:
        conn = await connect("127.0.0.1", port, client_id="pinged", keepalive=1)
        await wait_until(lambda: conn.pings_answered >= 3, timeout=5)
        assert conn.is_open
        await conn.disconnect()
        assert conn.closed.result() is None


async def test_negative_connack_raises_connect_refused() -> None:
    async with fake_broker(connack_code=5) as port:
        with pytest.raises(ConnectRefused, match="not authorized") as refused:
            await connect("127.0.0.1", port, client_id="refused")
    assert refused.value.code == 5


async def test_connecting_to_a_closed_port_raises_os_error() -> None:
    async with fake_broker() as port:
        pass
    with pytest.raises(OSError):
        await connect("127.0.0.1", port, client_id="nobody-home")


async def test_publishing_after_disconnect_raises_connection_lost() -> None:
    async with fake_broker() as port:
        conn = await connect("127.0.0.1", port, client_id="gone")
        await conn.disconnect()
        with pytest.raises(ConnectionLost):
            await conn.publish("devices/gone/telemetry", b"{}", qos=0)
