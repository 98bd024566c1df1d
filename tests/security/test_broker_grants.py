"""Embedded broker: a device's live session lasts only while the database still grants it."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from bridges.mqtt.broker import EmbeddedBroker
from bridges.mqtt.broker_grants import DeviceRecord
from devices.models import Device
from devices.services import device_delete, device_rotate_token, device_update, token_hash
from hub.broker import device_changes_follow, device_check, device_lookup
from tests.factories import make_device, make_user
from tests.security.mqtt import Probe, ThreadedBroker, settle
from tests.support import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

BRIDGE = ("hub-bridge", "bridge-secret")
# CONTRACT/brief: rotating, disabling or deleting closes live sessions within a second.
KICK_S = 1.0


@pytest.fixture
def broker() -> Iterator[ThreadedBroker]:
    """The embedded broker checking devices against the test database, as `hub serve` wires it."""
    settings = EmbeddedBroker(
        authenticate=device_check,
        lookup=device_lookup,
        bridge_username=BRIDGE[0],
        bridge_password=BRIDGE[1],
        port=free_port(),
    )
    with ThreadedBroker(settings) as running:
        unfollow = device_changes_follow(running.broker.device_changed)
        try:
            yield running
        finally:
            unfollow()


def device(port: int, uid: str, token: str, *, clean: bool = True) -> Probe:
    client = Probe(port, uid, token, client_id=uid, protocol=4, clean=clean)
    client.connect()
    return client


def bridge(port: int) -> Probe:
    client = Probe(port, *BRIDGE, client_id="hub-bridge", protocol=4)
    assert client.connect()
    return client


def closed_within(client: Probe, seconds: float) -> float:
    """Return how long the broker took to close the client's connection (fail past `seconds`)."""
    started = time.monotonic()
    assert client.closed.wait(seconds), f"still connected after {seconds} s"
    return time.monotonic() - started


def queued_command(port: int, uid: str, token: str) -> None:
    """Leave a persistent session for the device with one command queued in it."""
    client = device(port, uid, token, clean=False)
    assert client.subscribe(f"devices/{uid}/commands/+")
    client.close()
    hub = bridge(port)
    assert hub.publish(f"devices/{uid}/commands/queued", b'{"method": "wifi", "params": {}}')
    hub.close()


def test_rotating_a_token_closes_the_live_session_and_discards_it(broker):
    dev, old = make_device(make_user("alice"), "dev-rot")
    live = device(broker.port, "dev-rot", old, clean=False)
    assert live.subscribe("devices/dev-rot/commands/+")
    new = device_rotate_token(device=dev)
    closed_within(live, KICK_S)
    assert device(broker.port, "dev-rot", old).refused
    # The session is gone with its subscription: nothing is queued for it any more.
    hub = bridge(broker.port)
    assert hub.publish("devices/dev-rot/commands/after", b"{}")
    hub.close()
    fresh = device(broker.port, "dev-rot", new, clean=False)
    assert fresh.connack == "Success"
    assert fresh.session_present is False
    settle()
    assert fresh.messages == []
    fresh.close()


def test_a_rotated_devices_offline_session_loses_its_queued_messages(broker):
    dev, old = make_device(make_user("alice"), "dev-off")
    queued_command(broker.port, "dev-off", old)
    new = device_rotate_token(device=dev)
    fresh = device(broker.port, "dev-off", new, clean=False)
    assert fresh.connack == "Success"
    assert fresh.session_present is False
    assert fresh.subscribe("devices/dev-off/commands/+")
    settle()
    assert fresh.messages == []
    fresh.close()


def test_disabling_a_device_closes_its_live_session(broker):
    dev, token = make_device(make_user("alice"), "dev-off2")
    live = device(broker.port, "dev-off2", token, clean=False)
    assert live.subscribe("devices/dev-off2/commands/+")
    device_update(device=dev, active=False)
    closed_within(live, KICK_S)
    assert device(broker.port, "dev-off2", token).refused
    device_update(device=dev, active=True)
    again = device(broker.port, "dev-off2", token, clean=False)
    assert again.connack == "Success"
    assert again.session_present is False
    again.close()


def test_a_change_made_by_another_process_closes_the_session_within_a_second(broker):
    # A queryset update sends no signal: only the broker's periodic check can see it,
    # as with `hub device …` or the admin of another process.
    _, token = make_device(make_user("alice"), "dev-far")
    live = device(broker.port, "dev-far", token)
    Device.objects.filter(uid="dev-far").update(token_hash="0" * 64)
    closed_within(live, KICK_S)
    Device.objects.filter(uid="dev-far").update(active=False)
    assert device(broker.port, "dev-far", token).refused


def test_deleting_a_user_closes_the_sessions_of_their_devices(broker):
    alice = make_user("alice")
    _, token_1 = make_device(alice, "dev-c1")
    _, token_2 = make_device(alice, "dev-c2")
    one, two = device(broker.port, "dev-c1", token_1), device(broker.port, "dev-c2", token_2)
    alice.delete()  # the devices go by cascade, past devices.services
    closed_within(one, KICK_S)
    closed_within(two, KICK_S)


def test_a_deleted_devices_connection_cannot_publish_into_or_hear_a_new_device_of_its_uid(broker):
    alice, bob = make_user("alice"), make_user("bob")
    old, token_a = make_device(alice, "shared")
    hub = bridge(broker.port)
    assert hub.subscribe("devices/+/telemetry")
    a = device(broker.port, "shared", token_a, clean=False)
    assert a.subscribe("devices/shared/commands/+")
    assert hub.publish("devices/shared/commands/for-a", b'{"method": "ping"}')
    wait_until(lambda: a.messages, message="A's device to get A's command")

    sent = itertools.count()
    last_sent = 0
    stop = threading.Event()

    def publish_all_along() -> None:
        nonlocal last_sent
        while not stop.is_set() and not a.closed.is_set():
            last_sent = next(sent)
            a.client.publish("devices/shared/telemetry", json.dumps({"from": "a", "n": last_sent}))
            time.sleep(0.002)

    publisher = threading.Thread(target=publish_all_along, daemon=True)
    publisher.start()
    wait_until(lambda: len(hub.messages) > 5, message="A's readings to reach the bridge")
    device_delete(device=old)
    sent_before_delete = last_sent
    _, token_b = make_device(bob, "shared")
    assert hub.publish("devices/shared/commands/for-b", b'{"method": "wifi", "params": {"k": 1}}')
    elapsed = closed_within(a, KICK_S)
    stop.set()
    publisher.join(5)

    # Nothing A sent after its device was deleted reached the bridge (and so B's device).
    settle()
    from_a = [json.loads(payload) for _, payload in hub.messages]
    late = [message["n"] for message in from_a if message["n"] > sent_before_delete]
    assert late == [], f"{len(late)} readings of A's connection passed after the delete"
    assert all(topic != "devices/shared/commands/for-b" for topic, _ in a.messages)
    assert elapsed <= KICK_S
    b = device(broker.port, "shared", token_b, clean=False)
    assert b.connack == "Success"
    assert b.session_present is False
    b.close()
    hub.close()


def test_a_new_device_of_a_deleted_uid_gets_no_session_queue_or_retained_message_of_the_old(
    broker,
):
    alice, bob = make_user("alice"), make_user("bob")
    old, token_a = make_device(alice, "reused")
    a = device(broker.port, "reused", token_a, clean=False)
    assert a.subscribe("devices/reused/commands/+")
    a.client.publish("devices/reused/status", b"online", qos=1, retain=True)
    a.client.publish("devices/reused/telemetry", b'{"secret": 1}', qos=1, retain=True)
    watcher = bridge(broker.port)
    assert watcher.subscribe("devices/+/status")
    wait_until(lambda: watcher.messages, message="A's retained status at the broker")
    watcher.close()
    a.close()
    queued_command(broker.port, "reused", token_a)  # a command waits in A's session
    device_delete(device=old)
    _, token_b = make_device(bob, "reused")
    b = device(broker.port, "reused", token_b, clean=False)
    assert b.connack == "Success"
    assert b.session_present is False
    assert b.subscribe("devices/reused/#")
    settle(0.5)
    assert b.messages == []
    b.close()


def test_a_devices_client_id_must_be_its_uid(broker, caplog):
    _, token = make_device(make_user("alice"), "dev-id")
    caplog.set_level(logging.INFO, logger="bridges.mqtt.broker")
    squatter = Probe(broker.port, "dev-id", token, client_id="someone-else", protocol=4)
    assert not squatter.connect()
    assert squatter.connack == "Client identifier not valid"
    assert "its client id must be its uid" in caplog.text
    squatter.close()
    own = device(broker.port, "dev-id", token)
    assert own.connack == "Success"
    own.close()
    # The bridge's account keeps a client id of its own choosing.
    hub = Probe(broker.port, *BRIDGE, client_id="hub-bridge-2", protocol=4)
    assert hub.connect()
    hub.close()


class Gate:
    """A lookup that waits for the test's word: the database as slow as the test wants."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()

    async def lookup(self, uids: list[str]) -> dict[str, DeviceRecord]:
        await asyncio.get_running_loop().run_in_executor(None, self.open.wait)
        return await device_lookup(uids)


@pytest.fixture
def gated() -> Iterator[tuple[ThreadedBroker, Gate]]:
    gate = Gate()
    settings = EmbeddedBroker(
        authenticate=device_check,
        lookup=gate.lookup,
        bridge_username=BRIDGE[0],
        bridge_password=BRIDGE[1],
        port=free_port(),
    )
    with ThreadedBroker(settings) as running:
        unfollow = device_changes_follow(running.broker.device_changed)
        try:
            yield running, gate
        finally:
            gate.open.set()
            unfollow()


def test_a_device_back_with_a_new_token_before_any_check_gets_a_fresh_session(gated):
    broker, gate = gated
    dev, old = make_device(make_user("alice"), "dev-quick")
    queued_command(broker.port, "dev-quick", old)
    gate.open.clear()  # the periodic check cannot see the rotation
    Device.objects.filter(pk=dev.pk).update(token_hash=token_hash("rotated-elsewhere"))
    fresh = device(broker.port, "dev-quick", "rotated-elsewhere", clean=False)
    assert fresh.connack == "Success"
    assert fresh.session_present is False
    assert fresh.subscribe("devices/dev-quick/commands/+")
    settle()
    assert fresh.messages == []
    fresh.close()


def test_while_a_change_made_here_is_checked_the_device_is_held_not_dropped(gated):
    broker, gate = gated
    dev, token = make_device(make_user("alice"), "dev-held")
    hub = bridge(broker.port)
    assert hub.subscribe("devices/+/telemetry")
    live = device(broker.port, "dev-held", token)
    assert live.subscribe("devices/dev-held/commands/+")
    gate.open.clear()
    dev.name = "renamed in the admin"
    dev.save()  # every field saved: the broker must check the device again
    live.publish("devices/dev-held/telemetry", b'{"during": 1}')
    assert hub.publish("devices/dev-held/commands/during", b"{}")
    settle()
    assert hub.messages == [], "a publish passed before the check"
    assert live.messages == [], "a delivery passed before the check"
    gate.open.set()
    # Still granted: what the device published comes through, and deliveries resume.
    wait_until(lambda: hub.messages, message="the held publish")
    assert hub.messages == [("devices/dev-held/telemetry", b'{"during": 1}')]
    assert hub.publish("devices/dev-held/commands/after", b"{}")
    wait_until(lambda: live.messages, message="a command after the check")
    assert not live.closed.is_set()
    live.close()
    hub.close()
