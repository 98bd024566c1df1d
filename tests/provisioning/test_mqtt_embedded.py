"""The MQTT claim at the embedded broker: a key session claims its own client id, no more."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from bridges.mqtt.broker import EmbeddedBroker
from devices.dynsec import KEY_USERNAME_PREFIX
from devices.models import Device
from devices.services import device_authenticate
from hub.broker import device_check, device_lookup, key_check, key_claim_answer, key_lookup
from provisioning.models import ProvisioningKey
from provisioning.services import key_create, key_revoke
from tests.factories import make_device, make_user
from tests.security.mqtt import Probe, ThreadedBroker, probe, settle
from tests.support import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
BRIDGE = ("hub-bridge", "bridge-secret")
# As device sessions follow their grants: revoking closes the key's sessions within a second.
KICK_S = 1.0


@pytest.fixture
def broker():
    settings = EmbeddedBroker(
        authenticate=device_check,
        lookup=device_lookup,
        authenticate_key=key_check,
        key_lookup=key_lookup,
        provision=key_claim_answer,
        key_prefix=KEY_USERNAME_PREFIX,
        bridge_username=BRIDGE[0],
        bridge_password=BRIDGE[1],
        port=free_port(),
    )
    with ThreadedBroker(settings) as running:
        yield running


def ask(port: int, key: str, secret: str, uid: str, request: bytes = b"{}") -> dict:
    """Claim `uid` over MQTT as a device would; return the answer."""
    with probe(port, key, secret, client_id=uid, protocol=4) as device:
        assert device.connack == "Success", device.connack
        assert device.subscribe(f"provision/{uid}/response")
        assert device.publish(f"provision/{uid}/request", request)
        wait_until(lambda: device.messages, message=f"the answer to {uid}'s claim")
        (topic, payload), *_ = device.messages
        assert topic == f"provision/{uid}/response"
        return dict(json.loads(payload))


def test_a_device_claims_its_credentials_over_mqtt_then_connects_with_them(broker):
    alice = make_user("alice")
    created = key_create(owner=alice, uid_prefix="m-")
    answer = ask(broker.port, created.key.key, created.secret, "m-1", b'{"name": "Meter 1"}')
    assert answer["status"] == "ok" and answer["uid"] == "m-1"
    device = Device.objects.get(uid="m-1")
    assert device.owner == alice and device.name == "Meter 1"
    assert device_authenticate(uid="m-1", token=answer["token"]) == device
    with probe(broker.port, "m-1", answer["token"], client_id="m-1", protocol=4) as own:
        assert own.connack == "Success"
        assert own.publish("devices/m-1/telemetry", b'{"t": 1}')


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("expired", "key_expired"),
        ("exhausted", "key_exhausted"),
        ("taken", "uid_taken"),
        ("prefix", "uid_prefix"),
        ("garbage", "bad_request"),
    ],
)
def test_refused_claims_are_answered_with_their_own_code(broker, change, code):
    alice = make_user("alice")
    created = key_create(owner=alice, max_devices=1, uid_prefix="m-")
    key, secret = created.key.key, created.secret
    uid, request = "m-2", b"{}"
    if change == "expired":
        ProvisioningKey.objects.filter(key=key).update(expires=timezone.now() - timedelta(1))
    elif change == "exhausted":
        assert ask(broker.port, key, secret, "m-1")["status"] == "ok"
    elif change == "taken":
        make_device(alice, "m-2")
    elif change == "prefix":
        uid = "x-2"
    elif change == "garbage":
        request = b"not json"
    assert ask(broker.port, key, secret, uid, request) == {"status": "error", "error": code}


def test_a_wrong_secret_or_a_revoked_key_cannot_connect(broker):
    created = key_create(owner=make_user("alice"))
    with probe(broker.port, created.key.key, "wrong", client_id="m-1", protocol=4) as device:
        assert device.connack != "Success"
    key_revoke(key=created.key)
    with probe(broker.port, created.key.key, created.secret, client_id="m-1", protocol=4) as d:
        assert d.connack != "Success"


def test_a_key_session_may_touch_nothing_but_its_own_claim(broker):
    alice = make_user("alice")
    make_device(alice, "victim")
    created = key_create(owner=alice)
    key, secret = created.key.key, created.secret
    with probe(broker.port, *BRIDGE, client_id="hub-bridge", protocol=4) as bridge:
        assert bridge.subscribe("devices/+/telemetry")
        with probe(broker.port, key, secret, client_id="m-1", protocol=4) as spy:
            assert spy.connack == "Success"
            for topic in (
                "#",
                "devices/#",
                "provision/#",
                "provision/+/response",
                "provision/m-2/response",
                "provision/m-1/request",
            ):
                assert not spy.subscribe(topic), topic
            spy.publish("devices/victim/telemetry", b'{"t": 1}')
            spy.publish("provision/m-2/request", b"{}")
            # Another device claims m-2 meanwhile: the spy hears nothing of it.
            answer = ask(broker.port, key, secret, "m-2")
            assert answer["status"] == "ok"
            settle()
            assert spy.messages == []
        assert bridge.messages == []
    # The spy's request for m-2 was not taken: m-2 was claimed by its own client only once.
    assert ProvisioningKey.objects.get(key=key).devices_claimed == 1


@pytest.mark.parametrize("client_id", ["a/b", "+", "#"])
def test_a_key_session_needs_a_client_id_that_is_one_topic_level(broker, client_id):
    created = key_create(owner=make_user("alice"))
    with probe(broker.port, created.key.key, created.secret, client_id=client_id, protocol=4) as d:
        assert d.connack != "Success"


def test_revoking_a_key_closes_its_open_sessions_within_a_second(broker):
    alice = make_user("alice")
    revoked = key_create(owner=alice)
    kept = key_create(owner=alice)
    clients = {
        uid: Probe(broker.port, created.key.key, created.secret, client_id=uid, protocol=4)
        for uid, created in (("m-1", revoked), ("m-2", revoked), ("m-3", kept))
    }
    try:
        for uid, client in clients.items():
            assert client.connect(), client.connack
            assert client.subscribe(f"provision/{uid}/response")
        # A queryset update sends no signal, as a revocation by another process:
        # only the broker's periodic check can see it.
        revoked_at = time.monotonic()
        ProvisioningKey.objects.filter(pk=revoked.key.pk).update(revoked_at=timezone.now())
        for uid in ("m-1", "m-2"):
            client = clients[uid]
            assert client.closed.wait(KICK_S + 2), f"{uid} still connected"
            assert client.closed_at is not None and client.closed_at - revoked_at < KICK_S
        assert broker.broker.stats.closed["key_revoked"] == 2
        # The other key's session stays, and its claim is still answered.
        other = clients["m-3"]
        assert not other.closed.is_set()
        assert other.publish("provision/m-3/request", b"{}")
        wait_until(lambda: other.messages, message="the answer to m-3's claim")
        assert json.loads(other.messages[0][1])["status"] == "ok"
    finally:
        for client in clients.values():
            client.close()


def test_a_key_session_may_not_keep_a_session(broker):
    created = key_create(owner=make_user("alice"))
    client = Probe(
        broker.port, created.key.key, created.secret, client_id="m-1", protocol=4, clean=False
    )
    assert not client.connect()
    client.close()
