"""SenML end to end: a pack over MQTT is stored with its units; bad records are reported."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as paho
import pytest
from channels.db import database_sync_to_async
from paho.mqtt.enums import CallbackAPIVersion

from bridges.mqtt.config import BridgeConfig
from telemetry.models import LatestValue, Reading
from telemetry.values import datetime_to_ms
from tests.bridges.test_bridge import hub_bridge, publisher
from tests.factories import make_device, make_user
from tests.support import async_wait_until

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["hub_bridge"]  # the fixture, shared with the native JSON tests


def test_the_bridge_subscribes_to_senml_too():
    filters = BridgeConfig().topic_filters()
    assert filters[:2] == ["devices/+/telemetry", "devices/+/senml"]
    shared = BridgeConfig(shared_group="hub").topic_filters()
    assert shared == [f"$share/hub/{topic}" for topic in filters]


def _stored(uid: str) -> list[tuple[str, int, object, str | None]]:
    units = dict(LatestValue.objects.filter(device__uid=uid).values_list("metric", "unit"))
    return [
        (metric, datetime_to_ms(ts), value, units.get(metric))
        for metric, ts, value in Reading.objects.filter(device__uid=uid)
        .order_by("metric", "ts")
        .values_list("metric", "ts", "value")
    ]


async def test_senml_pack_over_mqtt_is_stored_with_units_and_bad_records_reported(
    mosquitto, hub_bridge
):
    owner = await database_sync_to_async(make_user)()
    await database_sync_to_async(make_device)(owner, "senml-1")
    errors: list[dict] = []
    listener = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="senml-errors"
    )
    listener.on_message = lambda c, u, m: errors.append(json.loads(m.payload))
    subscribed = threading.Event()
    listener.on_subscribe = lambda *args: subscribed.set()
    listener.connect("127.0.0.1", mosquitto.port)
    listener.subscribe("devices/senml-1/errors", qos=1)
    listener.loop_start()
    client = publisher(mosquitto.port)
    # The listener's SUBSCRIBE must reach the broker before the first error report.
    await async_wait_until(_subscribed(subscribed), message="the listener's SUBACK")
    base = int(time.time()) - 60
    pack = [
        {"bn": "boiler:", "bt": base, "bu": "Cel", "n": "temp", "v": 61.5},
        {"n": "temp", "t": 10, "v": 61.75},
        {"n": "pressure", "u": "bar", "t": 10, "v": 1.5},
        {"n": "valve", "vb": True},
        {"n": "blob", "vd": "aGk"},
    ]
    client.publish("devices/senml-1/senml", json.dumps(pack), qos=1).wait_for_publish(5)

    async def four_readings() -> bool:
        return len(await database_sync_to_async(_stored)("senml-1")) == 4

    await async_wait_until(four_readings, message="the pack's four readings")
    stored = await database_sync_to_async(_stored)("senml-1")
    assert [(metric, ts, unit) for metric, ts, _, unit in stored] == [
        ("boiler:pressure", (base + 10) * 1000, "bar"),
        ("boiler:temp", base * 1000, "Cel"),
        ("boiler:temp", (base + 10) * 1000, "Cel"),
        ("boiler:valve", stored[3][1], "Cel"),
    ]
    assert [value for _, _, value, _ in stored] == [1.5, 61.5, 61.75, 1.0]

    async def reported() -> bool:
        return bool(errors)

    await async_wait_until(reported, message="the vd record reported")
    assert errors[0]["topic"] == "devices/senml-1/senml"
    assert errors[0]["error"].startswith("unsupported_field")
    assert hub_bridge.bridge.stats.rejections["unsupported_field"] == 1
    # A later pack without units keeps them; native JSON on /telemetry still works.
    client.publish(
        "devices/senml-1/telemetry", json.dumps({"ts": (base + 20) * 1000, "values": {"x": 1}})
    ).wait_for_publish(5)

    async def five_readings() -> bool:
        return len(await database_sync_to_async(_stored)("senml-1")) == 5

    await async_wait_until(five_readings, message="the native reading")
    listener.loop_stop()
    client.loop_stop()


def _subscribed(event: threading.Event):
    async def subscribed() -> bool:
        return event.is_set()

    return subscribed
