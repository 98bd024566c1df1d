"""The bridge against a real broker: decode, batch, store, acknowledge, report errors."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator

import paho.mqtt.client as paho
import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer
from paho.mqtt.enums import CallbackAPIVersion

from bridges.mqtt.bridge import Bridge
from bridges.mqtt.config import BridgeConfig, BrokerAddress
from telemetry.ingest import ingest_batch_handle
from telemetry.models import Reading
from tests.factories import make_device, make_user
from tests.support import HUB_MOSQUITTO_CONF, Mosquitto, async_wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def publisher(port: int) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}"
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


class Running:
    """A bridge and an ingest loop sharing one in-memory layer in this event loop."""

    def __init__(self, config: BridgeConfig) -> None:
        self.layer = InMemoryChannelLayer()
        self.bridge = Bridge(config, self.layer)
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def ingest(self) -> None:
        while not self.stop.is_set():
            message = await self.layer.receive("telemetry.ingest")
            await ingest_batch_handle(self.layer, message)

    async def __aenter__(self) -> Running:
        self.tasks = [
            asyncio.create_task(self.bridge.run(self.stop)),
            asyncio.create_task(self.ingest()),
        ]
        await asyncio.wait_for(self.bridge.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.tasks[0], 15)
        self.tasks[1].cancel()
        await asyncio.gather(self.tasks[1], return_exceptions=True)


@pytest.fixture
async def hub_bridge(mosquitto: Mosquitto) -> AsyncIterator[Running]:
    config = BridgeConfig(
        broker=BrokerAddress(port=mosquitto.port),
        client_id="bridge-under-test",
        batch_max_delay_s=0.02,
    )
    async with Running(config) as running:
        yield running


async def count_readings(uid: str) -> int:
    return await database_sync_to_async(Reading.objects.filter(device__uid=uid).count)()


async def test_readings_published_are_stored_and_acknowledged(mosquitto, hub_bridge):
    owner = await database_sync_to_async(make_user)()
    await database_sync_to_async(make_device)(owner, "dev-a")
    client = publisher(mosquitto.port)
    t0 = int(time.time() * 1000)
    for i in range(200):
        payload = {"ts": t0 - i, "values": {"temperature": 20 + i / 10, "humidity": 40}}
        client.publish("devices/dev-a/telemetry", json.dumps(payload), qos=1)
    await async_wait_until(lambda: _equals(count_readings("dev-a"), 400), message="400 readings")
    await async_wait_until(_async(lambda: hub_bridge.bridge.stats.batches_stored >= 1))
    assert not hub_bridge.bridge.window.pending
    client.loop_stop()


async def test_malformed_payload_is_reported_and_next_message_stored(mosquitto, hub_bridge):
    owner = await database_sync_to_async(make_user)()
    await database_sync_to_async(make_device)(owner, "dev-b")
    errors: list[dict] = []
    listener = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="errors-listener"
    )
    listener.on_message = lambda c, u, m: errors.append(json.loads(m.payload))
    subscribed = threading.Event()
    listener.on_subscribe = lambda *args: subscribed.set()
    listener.connect("127.0.0.1", mosquitto.port)
    listener.subscribe("devices/dev-b/errors", qos=1)
    listener.loop_start()
    client = publisher(mosquitto.port)
    # The listener's SUBSCRIBE must reach the broker before the first error report.
    await async_wait_until(_subscribed(subscribed), message="the listener's SUBACK")
    client.publish("devices/dev-b/telemetry", b"{not json", qos=1)
    client.publish("devices/dev-b/telemetry", json.dumps({"temperature": 21.5}), qos=1)
    await async_wait_until(lambda: _equals(count_readings("dev-b"), 1), message="valid reading")
    await async_wait_until(_async(lambda: errors), message="an error report")
    assert errors[0]["topic"] == "devices/dev-b/telemetry"
    assert errors[0]["error"].startswith("invalid_json")
    assert hub_bridge.bridge.stats.rejections["invalid_json"] == 1
    listener.loop_stop()
    client.loop_stop()


async def _equals(awaitable, expected) -> bool:
    return (await awaitable) == expected


def _async(function):
    async def wrapper():
        return function()

    return wrapper


async def test_bridge_socket_and_hub_broker_config_send_without_nagle_delay(mosquitto, hub_bridge):
    # A command published right after a PUBACK would otherwise wait for the broker's
    # delayed ACK (~40 ms on Linux); so would a reply forwarded by the broker.
    connection = hub_bridge.bridge._connection
    assert connection is not None
    assert connection._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    for name in ("mosquitto.conf", "dynamic-security.conf"):
        lines = (HUB_MOSQUITTO_CONF.parent / name).read_text().splitlines()
        assert "set_tcp_nodelay true" in lines, name


def _subscribed(event: threading.Event):
    async def subscribed() -> bool:
        return event.is_set()

    return subscribed
