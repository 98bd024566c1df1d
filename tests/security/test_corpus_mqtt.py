"""The hostile-input corpus end to end: a real Mosquitto, the real bridge and ingest, PostgreSQL.

Every message ends in its documented rejection, counted by reason and reported
on the device's errors topic; the valid readings of the same message are
stored; the bridge never reconnects or stops, and stores what comes after.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest
from channels.db import database_sync_to_async

from bridges.mqtt.config import BridgeConfig, BrokerAddress
from devices.models import Command
from devices.services import command_create
from telemetry.models import Reading
from telemetry.values import columns_to_value
from tests.bridges.test_bridge import Running
from tests.factories import make_device, make_user
from tests.security.corpus import CASES, case_command, case_topic, case_uid
from tests.security.mqtt import Probe
from tests.security.test_corpus_codec import assert_stored
from tests.support import Mosquitto, async_wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SURVIVOR = "survivor"


@database_sync_to_async
def register_devices() -> None:
    owner = make_user("hostile")
    for index, case in enumerate(CASES):
        device, _ = make_device(owner, case_uid(index))
        if case.pending:
            command = command_create(device=device, method="reboot", params={}, timeout=600)
            Command.objects.filter(pk=command.pk).update(id=case_command(index))
    make_device(owner, SURVIVOR)


@database_sync_to_async
def command_statuses() -> dict[str, str]:
    return dict(Command.objects.values_list("id", "status"))


@database_sync_to_async
def stored_by_device() -> dict[str, dict[str, Any]]:
    stored: dict[str, dict[str, Any]] = {}
    rows = Reading.objects.values_list("device__uid", "metric", "value", "text", "kind")
    for uid, metric, value, text, kind in rows:
        stored.setdefault(uid, {})[metric] = columns_to_value(value, text, kind)
    return stored


def publish_corpus(port: int) -> int:
    """Publish every case at QoS 1, then the topics the hub must ignore; return the clock used."""
    now = int(time.time() * 1000)
    device = Probe(port, client_id="hostile-publisher")
    assert device.connect()
    for index, case in enumerate(CASES):
        assert device.publish(case_topic(index, case), case.payload(now)), case.name
    # Unknown uid: decoded, then ignored by ingest (counted, no error report).
    assert device.publish("devices/nobody-knows-me/telemetry", b'{"x": 1, "y": 2}')
    # Not a uid: an invalid topic for the bridge, nobody to report to.
    assert device.publish("devices/not a uid!/telemetry", b'{"x": 1}')
    # Extra levels: the bridge does not subscribe to them, so they never reach the hub.
    assert device.publish(f"devices/{case_uid(0)}/telemetry/extra", b'{"extra": 1}')
    device.close()
    # Past the broker's max_packet_size: Mosquitto drops the client, the hub sees nothing.
    giant = Probe(port, client_id="hostile-giant")
    assert giant.connect()
    giant.client.publish(f"devices/{case_uid(0)}/telemetry", b"x" * (1_048_576 + 1), qos=1)
    assert giant.closed.wait(5)
    giant.close()
    return now


async def test_every_hostile_message_ends_in_its_documented_rejection(mosquitto: Mosquitto):
    await register_devices()
    watcher = Probe(mosquitto.port, client_id="errors-watcher")
    assert watcher.connect()
    assert watcher.subscribe("devices/+/errors")
    config = BridgeConfig(
        broker=BrokerAddress(port=mosquitto.port),
        client_id="bridge-hostile",
        batch_max_delay_s=0.02,
    )
    expected = Counter({"invalid_topic": 1})
    for case in CASES:
        expected.update(case.rejections)
    async with Running(config) as running:
        bridge = running.bridge
        await asyncio.to_thread(publish_corpus, mosquitto.port)

        async def all_counted() -> bool:
            return (
                bridge.stats.rejections == expected
                and len(watcher.messages) == expected.total() - 1
                and bridge.stats.unknown_device_readings == 2
                and not bridge._pending
            )

        await async_wait_until(all_counted, timeout=30, message="every rejection counted")
        # Still alive and storing: no reconnect, no task ended.
        await asyncio.to_thread(survivor_publishes, mosquitto.port)
        await async_wait_until(
            lambda: _has(SURVIVOR), timeout=10, message="the survivor's reading stored"
        )
        assert bridge.stats.connects == 1
        assert not any(task.done() for task in running.tasks)
    watcher.close()

    errors = Counter()
    for topic, payload in watcher.messages:
        report = json.loads(payload)
        uid = topic.split("/")[1]
        assert report["topic"].startswith(f"devices/{uid}/")
        errors[(uid, report["error"].split(":", 1)[0])] += 1
    stored = await stored_by_device()
    for index, case in enumerate(CASES):
        uid = case_uid(index)
        assert {
            reason: count for (owner, reason), count in errors.items() if owner == uid
        } == case.rejections, case.name
        assert_stored(stored.pop(uid, {}), case.stored)
    assert stored == {SURVIVOR: {"alive": 1}}
    statuses = await command_statuses()
    for index, case in enumerate(CASES):
        if case.pending:
            wanted = "pending" if case.rejections else "succeeded"
            assert statuses[case_command(index)] == wanted, case.name


def survivor_publishes(port: int) -> None:
    device = Probe(port, client_id="survivor")
    assert device.connect()
    assert device.publish(f"devices/{SURVIVOR}/telemetry", b'{"alive": 1}')
    device.close()


async def _has(uid: str) -> bool:
    return bool((await stored_by_device()).get(uid))
