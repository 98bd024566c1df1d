"""The embedded broker (amqtt) enforces the rules the hub gives a managed Mosquitto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from amqtt.contexts import Action

from bridges.mqtt.broker import (
    BRIDGE_FILTERS,
    DeviceGrant,
    EmbeddedBroker,
    bridge_may_use,
    topic_matches,
)
from bridges.mqtt.config import BridgeConfig
from devices.dynsec import BRIDGE_PUBLICATIONS, BRIDGE_SUBSCRIPTIONS
from devices.services import (
    device_delete,
    device_rotate_token,
    device_update,
)
from hub.broker import device_check
from tests.factories import make_device, make_user
from tests.security.mqtt import Probe, ThreadedBroker, probe, settle
from tests.support import free_port, wait_until

TOKENS = {"dev-a": "token-a", "dev-b": "token-b"}
BRIDGE = ("hub-bridge", "bridge-secret")


async def check(uid: str, token: str) -> DeviceGrant | None:
    if TOKENS.get(uid) != token:
        return None
    return DeviceGrant(sorted(TOKENS).index(uid) + 1, f"hash-of-{token}")


@pytest.fixture
def broker() -> Iterator[ThreadedBroker]:
    settings = EmbeddedBroker(
        authenticate=check, bridge_username=BRIDGE[0], bridge_password=BRIDGE[1], port=free_port()
    )
    with ThreadedBroker(settings) as running:
        yield running


def v3(port: int, *args, **kwargs) -> Probe:
    """A MQTT 3.1.1 probe; a device's client id is its uid unless told otherwise."""
    if args and args[0] in TOKENS:
        kwargs.setdefault("client_id", args[0])
    return probe(port, *args, protocol=4, **kwargs)


def test_the_embedded_and_managed_brokers_know_the_bridges_topics():
    filters = BridgeConfig().topic_filters()
    assert list(BRIDGE_FILTERS) == filters == list(BRIDGE_SUBSCRIPTIONS)
    shared = BridgeConfig(shared_group="hub").topic_filters()
    assert all(bridge_may_use(topic, Action.SUBSCRIBE) for topic in filters + shared)
    assert all(
        bridge_may_use(topic.replace("+", "x"), Action.PUBLISH) for topic in BRIDGE_PUBLICATIONS
    )


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("devices/+/telemetry", "devices/a/telemetry", True),
        ("devices/+/telemetry", "devices/a/telemetry/x", False),
        ("devices/+/telemetry", "devices/telemetry", False),
        ("devices/+/commands/+/reply", "devices/a/commands/1/reply", True),
        ("devices/#", "devices/a/b/c", True),
    ],
)
def test_topic_matching(topic_filter, topic, matches):
    assert topic_matches(topic_filter, topic) is matches


@pytest.mark.parametrize(
    "credentials",
    [(None, None), ("dev-a", "wrong"), ("dev-a", ""), ("ghost", "token-a"), (BRIDGE[0], "nope")],
)
def test_wrong_or_missing_credentials_are_refused_at_connect(broker, credentials):
    with v3(broker.port, *credentials) as client:
        assert client.connack != "Success"


def test_device_uses_only_its_own_topics(broker):
    with (
        v3(broker.port, "dev-a", "token-a", client_id="dev-a") as a,
        v3(broker.port, "dev-b", "token-b", client_id="dev-b") as b,
    ):
        assert a.connack == b.connack == "Success"
        assert b.subscribe("devices/dev-b/#")
        for topic in ("devices/dev-b/#", "devices/+/telemetry", "#", "devices/dev-b/telemetry"):
            assert not a.subscribe(topic), topic
        assert a.subscribe("devices/dev-a/commands/+")
        a.publish("devices/dev-b/telemetry", b'{"x": 1}')
        a.publish("devices/dev-a/telemetry", b'{"x": 2}')
        settle()
        assert b.messages == []


def test_a_last_will_for_another_devices_topic_is_refused(broker):
    with v3(broker.port, "dev-b", "token-b") as b:
        assert b.subscribe("devices/dev-b/#")
        with v3(broker.port, "dev-a", "token-a", will=("devices/dev-b/status", b"offline")) as a:
            assert a.connack != "Success"
        will = ("devices/dev-a/status", b"x")
        own = Probe(broker.port, "dev-a", "token-a", client_id="dev-a", protocol=4, will=will)
        assert own.connect()
        own.drop()
        settle()
        assert b.messages == []


def test_bridge_reads_device_topics_and_writes_only_errors_and_commands(broker):
    with (
        v3(broker.port, *BRIDGE) as bridge,
        v3(broker.port, "dev-a", "token-a") as device,
    ):
        for topic in BRIDGE_FILTERS:
            assert bridge.subscribe(topic), topic
        for topic in ("#", "devices/#", "devices/+/errors", "$share/+/devices/+/telemetry"):
            assert not bridge.subscribe(topic), topic
        assert device.subscribe("devices/dev-a/#")
        bridge.publish("devices/dev-a/errors", b"{}")
        bridge.publish("devices/dev-a/commands/c1", b"{}")
        bridge.publish("devices/dev-a/telemetry", b'{"spoofed": 1}')
        bridge.publish("devices/dev-a/commands/c1/reply", b'{"ok": true}')
        wait_until(lambda: len(device.messages) >= 2, message="errors and a command")
        settle()
        assert sorted(topic for topic, _ in device.messages) == [
            "devices/dev-a/commands/c1",
            "devices/dev-a/errors",
        ]


@pytest.mark.parametrize("clean", [True, False])
def test_a_refused_connect_with_the_bridges_client_id_leaves_its_session_alone(broker, clean):
    bridge = Probe(broker.port, *BRIDGE, client_id="hub-bridge", protocol=4, clean=False)
    assert bridge.connect()
    assert bridge.subscribe("devices/+/telemetry")
    with v3(broker.port, "dev-a", "wrong", client_id="hub-bridge", clean=clean) as intruder:
        assert intruder.connack != "Success"
    with v3(broker.port, "dev-a", "token-a") as device:
        device.publish("devices/dev-a/telemetry", b'{"x": 1}')
        wait_until(lambda: bridge.messages, message="the bridge still receiving")
    assert not bridge.closed.is_set()
    bridge.close()


def test_a_device_may_not_take_over_another_accounts_session(broker):
    bridge = Probe(broker.port, *BRIDGE, client_id="hub-bridge", protocol=4, clean=False)
    assert bridge.connect()
    with v3(broker.port, "dev-b", "token-b", client_id="hub-bridge") as intruder:
        assert intruder.connack != "Success"
    with v3(broker.port, "dev-b", "token-b", client_id="dev-b", clean=False) as b:
        assert b.connack == "Success"
    with v3(broker.port, "dev-a", "token-a", client_id="dev-b") as intruder:
        assert intruder.connack != "Success"
    assert not bridge.closed.is_set()
    bridge.close()


async def test_the_subscription_table_may_change_while_amqtt_walks_it():
    """amqtt awaits while it walks the table: a SUBSCRIBE meanwhile lost a message (`hub serve`)."""
    broker = EmbeddedBroker(authenticate=check, bridge_username="b", bridge_password="p").build()
    table = broker._subscriptions
    table["devices/+/telemetry"] = []
    for topic_filter, _ in table.items():
        table[f"{topic_filter}/new"] = []
    for topic_filter in table:
        table[f"{topic_filter}/newer"] = []
    assert len(table) == 4


@pytest.mark.django_db(transaction=True)
def test_rotated_disabled_and_deleted_devices_are_refused_by_the_embedded_broker():
    settings = EmbeddedBroker(
        authenticate=device_check, bridge_username="b", bridge_password="p", port=free_port()
    )
    alice = make_user("alice")
    device, old = make_device(alice, "dev-r")
    with ThreadedBroker(settings) as broker:

        def accepted(token: str) -> bool:
            with v3(broker.port, "dev-r", token, client_id="dev-r") as client:
                return client.connack == "Success"

        assert accepted(old)
        new = device_rotate_token(device=device)
        assert not accepted(old)
        assert accepted(new)
        device_update(device=device, active=False)
        assert not accepted(new)
        device_update(device=device, active=True)
        assert accepted(new)
        device_delete(device=device)
        assert not accepted(new)


def test_a_device_never_gets_other_devices_retained_messages(broker):
    # The bridge's devices/+/status matches every device's retained presence;
    # amqtt handed those to every client that connected afterwards.
    with v3(broker.port, *BRIDGE) as bridge:
        assert bridge.subscribe("devices/+/status")
        with v3(broker.port, "dev-b", "token-b", client_id="dev-b") as b:
            b.client.publish("devices/dev-b/status", b"online", qos=1, retain=True)
            wait_until(lambda: bridge.messages, message="the bridge to get dev-b's status")
        for clean in (True, False):
            with v3(broker.port, "dev-a", "token-a", client_id="dev-a", clean=clean) as a:
                assert a.subscribe("devices/dev-a/errors")
                settle()
                assert a.messages == []
        with v3(broker.port, "dev-b", "token-b") as own:
            assert own.subscribe("devices/dev-b/status")
            wait_until(lambda: own.messages, message="dev-b's own retained status")
            assert own.messages == [("devices/dev-b/status", b"online")]
