"""The hostile-input corpus end to end: Mosquitto, `hub bridge` and `hub ingest` processes, Redis.

The workers run as processes, as in production, on pytest's PostgreSQL test
database and a private Redis. Every message ends in its documented rejection,
counted by reason (the bridge's /metrics) and reported on the device's errors
topic; the valid readings of the same message are stored; the bridge never
reconnects or stops, and stores what comes after.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from devices.models import Command
from devices.services import command_create
from telemetry.models import Reading
from telemetry.values import columns_to_value
from tests.factories import make_device, make_user
from tests.guarantee.harness import Stack
from tests.security.corpus import CASES, MAX_READINGS, case_command, case_topic, case_uid
from tests.security.mqtt import Probe
from tests.security.test_corpus_codec import assert_stored
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

SURVIVOR = "survivor"


def register_devices() -> None:
    owner = make_user("hostile")
    for index, case in enumerate(CASES):
        device, _ = make_device(owner, case_uid(index))
        if case.pending:
            command = command_create(device=device, method="reboot", params={}, timeout=600)
            Command.objects.filter(pk=command.pk).update(id=case_command(index))
    make_device(owner, SURVIVOR)


def command_statuses() -> dict[str, str]:
    return dict(Command.objects.values_list("id", "status"))


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


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Stack]:
    """Redis and Mosquitto of their own; the workers, once started, use the test database."""
    stack = Stack(tmp_path, database=connection.settings_dict["NAME"])
    try:
        yield stack.open()
    finally:
        # Before pytest-django empties the tables: no worker may hold a connection then.
        stack.close()


def test_every_hostile_message_ends_in_its_documented_rejection(workers: Stack):
    register_devices()
    watcher = Probe(workers.mosquitto.port, client_id="errors-watcher")
    assert watcher.connect()
    assert watcher.subscribe("devices/+/errors")
    # "readings_at_limit" stores one message of MAX_READINGS distinct metrics; the metric
    # limit (HUB_MAX_METRICS_PER_DEVICE) has tests of its own.
    workers.start("ingest", HUB_MAX_METRICS_PER_DEVICE=str(MAX_READINGS))
    workers.wait_ready("ingest")
    workers.start_bridge(HUB_BATCH_MAX_DELAY_MS="20")
    expected = Counter({"invalid_topic": 1})
    for case in CASES:
        expected.update(case.rejections)
    publish_corpus(workers.mosquitto.port)

    def counted() -> dict[str, Any]:
        bridge, ingest = workers.metrics("bridge"), workers.metrics("ingest")
        return {
            "rejections": Counter(
                {
                    labels["reason"]: int(value)
                    for name, labels, value in bridge.samples
                    if name == "hub_rejections_total" and value
                }
            ),
            "reports": len(watcher.messages),
            "unknown": ingest.value("hub_readings_unknown_device_total"),
            "pending": bridge.value("hub_bridge_readings_pending")
            + bridge.value("hub_bridge_batches_in_flight")
            + bridge.value("hub_bridge_batches_waiting"),
        }

    wanted = {"rejections": expected, "reports": expected.total() - 1, "unknown": 2, "pending": 0}
    try:
        wait_until(lambda: counted() == wanted, timeout=30, message="every rejection counted")
    except AssertionError as error:
        raise AssertionError(f"{error}: {counted()} != {wanted}\n{workers.logs()}") from None
    # Still alive and storing: no reconnect, no worker stopped.
    survivor_publishes(workers.mosquitto.port)
    wait_until(lambda: stored_by_device().get(SURVIVOR), message="the survivor's reading stored")
    assert workers.value("bridge", "hub_mqtt_connects_total") == 1
    assert workers.value("bridge", "hub_mqtt_connected") == 1
    workers.alive("bridge", "ingest")
    watcher.close()

    errors: Counter[tuple[str, str]] = Counter()
    for topic, payload in watcher.messages:
        report = json.loads(payload)
        uid = topic.split("/")[1]
        assert report["topic"].startswith(f"devices/{uid}/")
        errors[(uid, report["error"].split(":", 1)[0])] += 1
    stored = stored_by_device()
    for index, case in enumerate(CASES):
        uid = case_uid(index)
        assert {
            reason: count for (owner, reason), count in errors.items() if owner == uid
        } == case.rejections, case.name
        assert_stored(stored.pop(uid, {}), case.stored)
    assert stored == {SURVIVOR: {"alive": 1}}
    statuses = command_statuses()
    for index, case in enumerate(CASES):
        if case.pending:
            wanted_status = "pending" if case.rejections else "succeeded"
            assert statuses[case_command(index)] == wanted_status, case.name


def survivor_publishes(port: int) -> None:
    device = Probe(port, client_id="survivor")
    assert device.connect()
    assert device.publish(f"devices/{SURVIVOR}/telemetry", b'{"alive": 1}')
    device.close()
