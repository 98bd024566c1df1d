"""The bridge ignores retained telemetry: a broker replays it at every subscription."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import paho.mqtt.client as paho
import pytest
from channels.db import database_sync_to_async
from paho.mqtt.enums import CallbackAPIVersion

from bridges.mqtt.broker import EmbeddedBroker
from bridges.mqtt.config import BridgeConfig, BrokerAddress
from hub.broker import device_check, device_lookup
from telemetry.models import Reading
from tests.bridges.test_bridge import Running
from tests.factories import make_device, make_user
from tests.security.mqtt import ThreadedBroker
from tests.support import Mosquitto, async_wait_until, free_port

pytestmark = pytest.mark.django_db(transaction=True)

BRIDGE = ("hub-bridge", "bridge-secret")


class Setup:
    """A broker to run the bridge against, and how a device connects to it."""

    def __init__(self, port: int, bridge: BrokerAddress, protocol: int) -> None:
        self.port = port
        self.bridge = bridge
        self.protocol = protocol

    def device(self, uid: str, token: str) -> paho.Client:
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=uid,
            protocol=paho.MQTTv311,
        )
        client.username_pw_set(uid, token)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        return client


@pytest.fixture(params=["mosquitto", "embedded"])
async def setup(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Setup]:
    if request.param == "mosquitto":
        broker = Mosquitto(tmp_path).start()
        try:
            yield Setup(broker.port, BrokerAddress(port=broker.port), protocol=5)
        finally:
            broker.stop()
        return
    embedded = EmbeddedBroker(
        authenticate=device_check,
        lookup=device_lookup,
        bridge_username=BRIDGE[0],
        bridge_password=BRIDGE[1],
        port=free_port(),
    )
    with ThreadedBroker(embedded) as running:
        address = BrokerAddress(port=running.port, username=BRIDGE[0], password=BRIDGE[1])
        yield Setup(running.port, address, protocol=4)


async def stored(uid: str) -> list[float]:
    rows = Reading.objects.filter(device__uid=uid, metric="temperature")
    return await database_sync_to_async(lambda: sorted(rows.values_list("value", flat=True)))()


async def test_a_retained_reading_is_stored_once_not_at_every_bridge_reconnect(setup):
    owner = await database_sync_to_async(make_user)()
    _, token = await database_sync_to_async(make_device)(owner, "dev-ret")
    config = BridgeConfig(
        broker=setup.bridge,
        client_id="bridge-retained",
        protocol=setup.protocol,
        batch_max_delay_s=0.02,
    )
    device = setup.device("dev-ret", token)
    async with Running(config):
        # No ts: the hub stamps it on arrival, so each replay would be a new reading.
        device.publish("devices/dev-ret/telemetry", json.dumps({"temperature": 1}), 1, True)
        await async_wait_until(lambda: _is(stored("dev-ret"), [1.0]), message="the live reading")
    async with Running(config) as again:
        # The broker replays the retained reading when the bridge subscribes again
        # (amqtt also when it resumes the bridge's session); then comes a marker.
        marker = {"ts": int(time.time() * 1000), "values": {"temperature": 2}}
        device.publish("devices/dev-ret/telemetry", json.dumps(marker), 1)
        bridge = again.bridge
        await async_wait_until(_async(lambda: bridge.stats.messages >= 2), message="both")
        await async_wait_until(lambda: _has(stored("dev-ret"), 2.0), message="the marker")
        await async_wait_until(_async(lambda: bridge.backlog() == (0, 0, 0)), message="idle")
        assert await stored("dev-ret") == [1.0, 2.0]
        assert bridge.stats.retained_ignored >= 1
    device.loop_stop()
    device.disconnect()


async def _has(awaitable, value) -> bool:
    return value in await awaitable


async def _is(awaitable, expected) -> bool:
    return (await awaitable) == expected


def _async(function):
    async def wrapper():
        return function()

    return wrapper
