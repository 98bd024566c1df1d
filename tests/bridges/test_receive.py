"""The bridge's receive path on a real broker: PUBLISH decoded from the buffer, bulk PUBACKs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridges.mqtt.config import BridgeConfig, BrokerAddress
from bridges.mqtt.connection import MqttConnection
from bridges.mqtt.receive import Incoming
from tests.support import Mosquitto, async_wait_until

TOPIC = "devices/rx-1/telemetry"


def publisher(port: int) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"pub-{time.monotonic_ns()}",
        protocol=paho.MQTTv5,
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def with_properties() -> Properties:
    """Properties a device may send; the bridge reads none, so they must be skipped exactly."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = [("firmware", "1.2.3"), ("x" * 300, "y" * 300)]
    properties.ContentType = "application/json"
    properties.MessageExpiryInterval = 3600
    return properties


class Received:
    """An MqttConnection on this event loop that collects what it receives."""

    def __init__(self, port: int, protocol: int, client_id: str) -> None:
        self.config = BridgeConfig(
            broker=BrokerAddress(port=port), client_id=client_id, protocol=protocol
        )
        self.messages: list[Incoming | paho.MQTTMessage] = []
        self.connection: MqttConnection | None = None

    async def connect(self) -> MqttConnection:
        self.connection = connection = MqttConnection(self.config, self.messages.append)
        await connection.connect()
        subscribed = asyncio.Event()
        logged = connection.client.on_subscribe

        def on_subscribe(*args: Any) -> None:
            logged(*args)
            subscribed.set()

        connection.client.on_subscribe = on_subscribe
        connection.subscribe(["devices/+/telemetry"])
        await asyncio.wait_for(subscribed.wait(), 10)
        return connection

    async def count(self, wanted: int, timeout: float = 20.0) -> None:
        async def enough() -> bool:
            return len(self.messages) >= wanted

        await async_wait_until(enough, timeout=timeout, message=f"{wanted} messages")


@pytest.fixture
async def publishing(mosquitto: Mosquitto) -> AsyncIterator[paho.Client]:
    client = publisher(mosquitto.port)
    yield client
    client.loop_stop()
    client.disconnect()


@pytest.mark.parametrize("protocol", [5, 4])
async def test_publishes_arrive_whole_and_mostly_on_the_fast_path(
    mosquitto: Mosquitto, publishing: paho.Client, protocol: int
) -> None:
    # A retained message is delivered with the retain flag at subscription.
    publishing.publish(TOPIC, b'{"retained":1}', qos=1, retain=True).wait_for_publish(5)
    received = Received(mosquitto.port, protocol, f"rx-{protocol}")
    connection = await received.connect()
    try:
        await received.count(1)
        sent: list[tuple[bytes, int]] = []
        for index in range(600):
            # Mixed sizes; one body spans several reads of the socket.
            payload = (b"%d:" % index) + b"v" * (200_000 if index == 300 else index % 97)
            qos = 0 if index % 50 == 0 else 1
            properties = with_properties() if index % 2 else None
            publishing.publish(TOPIC, payload, qos=qos, properties=properties)
            sent.append((payload, qos))
        await received.count(1 + len(sent))
        first, rest = received.messages[0], received.messages[1:]
        assert (first.topic, bytes(first.payload), first.retain) == (
            TOPIC,
            b'{"retained":1}',
            True,
        )
        # The publisher holds QoS 1 back (its in-flight window), so only each QoS keeps its order.
        for qos in (0, 1):
            got = [bytes(m.payload) for m in rest if m.qos == qos]
            assert got == [payload for payload, sent_qos in sent if sent_qos == qos]
        assert all(m.topic == TOPIC and not m.retain for m in rest)
        mids = [m.mid for m in rest if m.qos == 1]
        assert len(set(mids)) == len(mids) and all(mids)
        # Nearly all decoded from the buffer; paho takes the few at a chunk's edge.
        assert connection.client.fast_publishes >= 500
        connection.ack_many([m.mid for m in received.messages if m.qos == 1])
    finally:
        await connection.disconnect()


async def test_bulk_acknowledgements_are_what_the_broker_forgets(
    mosquitto: Mosquitto, publishing: paho.Client
) -> None:
    received = Received(mosquitto.port, 5, "rx-acks")
    connection = await received.connect()
    for index in range(200):
        publishing.publish(TOPIC, b"m%d" % index, qos=1, properties=with_properties())
    await received.count(200)
    # Acknowledge the even messages in one write, the odd ones never.
    connection.ack_many([m.mid for m in received.messages if int(m.payload[1:]) % 2 == 0])
    await async_wait_until(
        lambda: _written(connection), message="acknowledgements written to the broker"
    )
    await connection.disconnect()

    # The persistent session redelivers exactly the unacknowledged ones, then the marker.
    received.messages.clear()
    connection = await received.connect()
    try:
        publishing.publish(TOPIC, b"marker", qos=1)
        await received.count(101)
        payloads = [bytes(m.payload) for m in received.messages]
        assert payloads[-1] == b"marker"
        assert sorted(payloads[:-1]) == sorted(b"m%d" % i for i in range(1, 200, 2))
    finally:
        connection.ack_many([m.mid for m in received.messages])
        await connection.disconnect()


async def _written(connection: MqttConnection) -> bool:
    return not connection.client.want_write()
