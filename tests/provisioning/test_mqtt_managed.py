"""The MQTT claim behind a managed Mosquitto: key accounts, the bridge's responder, isolation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from bridges.mqtt.config import BridgeConfig, BrokerAddress
from bridges.mqtt.provision import ProvisionResponder
from devices.dynsec import KEY_TEXTNAME
from devices.models import Device
from hub.broker import key_claim_answer_managed
from provisioning.broker import key_acls, key_role
from provisioning.models import ProvisioningKey
from provisioning.services import key_create, key_revoke
from tests.factories import make_device, make_user
from tests.security.managed import accepted, admin, client_of, role_acls, sync
from tests.security.mqtt import BRIDGE, DynsecMosquitto, probe, settle
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def responder(managed: DynsecMosquitto) -> Iterator[ProvisionResponder]:
    """`hub bridge`'s claim responder on a loop of its own thread, as the bridge account."""
    config = BridgeConfig(
        broker=BrokerAddress(port=managed.port, username=BRIDGE[0], password=BRIDGE[1]),
        client_id="hub-bridge-1",
    )
    running = ProvisionResponder(config, key_claim_answer_managed)
    running.retain_s = 1  # the answer's grant is taken back after a second
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stop = asyncio.run_coroutine_threadsafe(_event(), loop).result(5)
    done = asyncio.run_coroutine_threadsafe(running.run(stop), loop)
    try:
        yield running
    finally:
        loop.call_soon_threadsafe(stop.set)
        done.result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _event() -> asyncio.Event:
    return asyncio.Event()


def answers(device: Any) -> list[bytes]:
    """Return the non-empty messages the device received."""
    return [payload for _, payload in list(device.messages) if payload]


def ask(port: int, key: str, secret: str, uid: str, name: str = "") -> dict:
    """Claim `uid` as a device would behind Mosquitto (credentials in the payload too).

    Mosquitto closes the key's connections when the hub lets them receive the
    answer; the device connects again and finds it retained.
    """
    request = json.dumps({"key": key, "secret": secret, "name": name})
    deadline = time.monotonic() + 30
    asked = False
    while time.monotonic() < deadline:
        with probe(port, key, secret, client_id=uid) as device:
            assert device.connack == "Success", device.connack
            assert device.subscribe(f"provision/{uid}/response")
            if not asked:
                asked = device.publish(f"provision/{uid}/request", request)
            # An empty message is the hub clearing an earlier retained answer: not one.
            while not (answers(device) or device.closed.is_set()):
                if time.monotonic() > deadline:
                    break
                device.closed.wait(0.05)
            if answers(device):
                return dict(json.loads(answers(device)[0]))
    raise AssertionError(f"no answer to {uid}'s claim")


def test_a_key_is_a_broker_account_from_creation_to_revocation(managed):
    created = key_create(owner=make_user("alice"))
    key, secret = created.key.key, created.secret
    client = client_of(managed, key)
    assert client is not None and client["textname"] == KEY_TEXTNAME
    assert role_acls(managed, key_role(key)) == key_acls()
    assert accepted(managed, key, secret, client_id="any-uid")
    assert not accepted(managed, key, "wrong", client_id="any-uid")
    key_revoke(key=created.key)
    assert not accepted(managed, key, secret, client_id="any-uid")
    assert client_of(managed, key) is None and role_acls(managed, key_role(key)) is None


def test_a_device_claims_over_mqtt_behind_mosquitto_then_publishes(managed, responder):
    alice = make_user("alice")
    created = key_create(owner=alice, uid_prefix="m-")
    answer = ask(managed.port, created.key.key, created.secret, "m-1", "Meter 1")
    assert answer["status"] == "ok" and answer["uid"] == "m-1"
    assert Device.objects.get(uid="m-1").owner == alice
    with probe(managed.port, "m-1", answer["token"], client_id="m-1") as device:
        assert device.connack == "Success"
        assert device.publish("devices/m-1/telemetry", b'{"t": 1}')
    # The answer's grant was taken back once sent.
    wait_until(
        lambda: role_acls(managed, key_role(created.key.key)) == key_acls(),
        message="the key's role back to its standing ACLs",
    )
    assert ask(managed.port, created.key.key, created.secret, "m-1") == {
        "status": "error",
        "error": "uid_taken",
    }


@pytest.mark.parametrize(
    ("change", "code"), [("expired", "key_expired"), ("exhausted", "key_exhausted")]
)
def test_an_expired_or_exhausted_key_is_refused_behind_mosquitto(managed, responder, change, code):
    created = key_create(owner=make_user("alice"), max_devices=1, uid_prefix="m-")
    key, secret = created.key.key, created.secret
    if change == "expired":
        ProvisioningKey.objects.filter(key=key).update(expires=timezone.now() - timedelta(1))
    else:
        assert ask(managed.port, key, secret, "m-1")["status"] == "ok"
    assert ask(managed.port, key, secret, "m-2") == {"status": "error", "error": code}
    assert not Device.objects.filter(uid="m-2").exists()


def test_a_key_account_can_do_nothing_else_and_hears_no_other_keys_answers(managed, responder):
    alice = make_user("alice")
    make_device(alice, "victim")
    mine = key_create(owner=alice)
    theirs = key_create(owner=make_user("bob"))
    key, secret = theirs.key.key, theirs.secret
    with probe(managed.port, key, secret, client_id="spy") as spy:
        for topic in ("#", "devices/#", "devices/victim/telemetry", "$CONTROL/#"):
            assert not spy.subscribe(topic), topic
        # It may subscribe to another uid's answer, but never receives it.
        assert spy.subscribe("provision/m-2/response")
        assert spy.subscribe("provision/+/response")
        answer = ask(managed.port, mine.key.key, mine.secret, "m-2")
        assert answer["status"] == "ok"
        settle()
        assert spy.messages == []
    for topic in ("devices/victim/telemetry", "devices/victim/status", "provision/x/response"):
        with probe(managed.port, key, secret, client_id="spy") as again:
            assert not again.publish(topic, b'{"t": 1}'), topic


def test_sync_repairs_key_accounts_and_removes_revoked_ones(managed):
    alive = key_create(owner=make_user("alice"))
    gone = key_create(owner=make_user("bob"))
    admin(
        managed,
        {"command": "deleteClient", "username": alive.key.key},
        {"command": "deleteRole", "rolename": key_role(alive.key.key)},
    )
    # Revoked while the broker was away: its account stayed.
    type(gone.key).objects.filter(pk=gone.key.pk).update(revoked_at="2026-01-01T00:00:00Z")
    lines = sync()
    assert any(alive.key.key in line and "created" in line for line in lines), lines
    assert client_of(managed, gone.key.key) is None
    assert role_acls(managed, key_role(alive.key.key)) == key_acls()
    # Its secret is not kept: the recreated account is locked, and sync says so.
    assert not accepted(managed, alive.key.key, alive.secret, client_id="x")
    assert any("conflict" in line and alive.key.key in line for line in lines)
    assert "in sync" in sync()[-1]
