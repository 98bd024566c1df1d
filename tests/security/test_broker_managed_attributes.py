"""Attributes topics in a hub-managed Mosquitto with dynamic security (CONTRACT §7).

A device reads its own desired attributes (retained, published by the bridge's
account) and publishes its own reported ones, and nobody else's; the bridge role's
attributes ACLs reach a broker set up before them through `hub broker sync`.
"""

from __future__ import annotations

import pytest

from devices.dynsec import BRIDGE_ROLE, acl_command, bridge_acls, device_acls, device_role
from tests.factories import make_device, make_user
from tests.security.managed import admin, retained_under, role_acls, sync
from tests.security.mqtt import BRIDGE, probe, settle
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

DESIRED = b'{"version": 1, "values": {"interval": 5}}'


def test_a_device_gets_its_own_desired_attributes_and_reports_only_its_own(managed):
    alice = make_user("alice")
    _, token_a = make_device(alice, "dev-a")
    _, token_b = make_device(alice, "dev-b")
    # The bridge publishes desired retained, as the hub does for each change.
    with probe(managed.port, *BRIDGE) as bridge:
        assert bridge.publish("devices/dev-a/attributes/desired", DESIRED, retain=True)
        assert bridge.publish("devices/dev-b/attributes/desired", DESIRED, retain=True)
    with (
        probe(managed.port, *BRIDGE) as bridge,
        probe(managed.port, "dev-a", token_a, client_id="dev-a") as a,
        probe(managed.port, "dev-b", token_b, client_id="dev-b") as b,
    ):
        assert bridge.subscribe("devices/+/attributes/reported")
        assert bridge.subscribe("$share/hub/devices/+/attributes/reported")
        # Its own desired, retained, on connecting; not another device's.
        assert a.subscribe("devices/dev-a/attributes/desired")
        wait_until(
            lambda: a.retained == [("devices/dev-a/attributes/desired", DESIRED)],
            message="dev-a's retained desired attributes",
        )
        for topic in (
            "devices/dev-b/attributes/desired",
            "devices/+/attributes/desired",
            "devices/+/attributes/#",
        ):
            assert not a.subscribe(topic), topic
        assert b.subscribe("devices/dev-b/attributes/#")
        wait_until(lambda: b.retained != [], message="dev-b's retained desired attributes")
        b.retained.clear()
        b.messages.clear()

        # Its own reported reaches the hub.
        assert a.publish("devices/dev-a/attributes/reported", b'{"interval": 5}')
        wait_until(
            lambda: ("devices/dev-a/attributes/reported", b'{"interval": 5}') in bridge.messages,
            message="dev-a's reported attributes at the bridge",
        )
        bridge.messages.clear()
        # Another device's reported, or any desired: refused, and nobody gets it.
        for topic in (
            "devices/dev-b/attributes/reported",
            "devices/dev-b/attributes/desired",
            "devices/dev-a/attributes/desired",
        ):
            for retain in (False, True):
                # Each from a new connection: Mosquitto closes one after refusing a publish.
                with probe(managed.port, "dev-a", token_a, client_id="dev-a") as again:
                    assert not again.publish(topic, b'{"interval": 1}', retain=retain), topic
        # Neither may the bridge speak for a device.
        assert not bridge.publish("devices/dev-b/attributes/reported", b'{"interval": 1}')
        settle()
        assert bridge.messages == []
        assert b.messages == []
    # What stays retained is the hub's desired value, nothing a device put there.
    assert retained_under(managed, "dev-a") == [("devices/dev-a/attributes/desired", DESIRED)]
    assert retained_under(managed, "dev-b") == [("devices/dev-b/attributes/desired", DESIRED)]


def test_sync_gives_a_broker_set_up_before_attributes_the_attributes_acls(managed):
    _, token = make_device(make_user("alice"), "dev-a")
    # A broker the hub set up before attributes existed: roles without their ACLs.
    old_bridge = [acl for acl in bridge_acls() if "/attributes/" in acl[1]]
    old_device = [acl for acl in device_acls("dev-a") if acl[1].endswith("/attributes/reported")]
    assert len(old_bridge) == 4 and len(old_device) == 1
    admin(
        managed,
        *(acl_command("removeRoleACL", BRIDGE_ROLE, acl) for acl in old_bridge),
        *(acl_command("removeRoleACL", device_role("dev-a"), acl) for acl in old_device),
    )
    with probe(managed.port, *BRIDGE) as bridge:
        assert not bridge.subscribe("devices/+/attributes/reported")  # the old state holds
    with probe(managed.port, *BRIDGE) as bridge:
        assert not bridge.publish("devices/dev-a/attributes/desired", DESIRED)

    lines = sync()

    assert f"repaired role {BRIDGE_ROLE}" in lines
    assert f"repaired role {device_role('dev-a')}" in lines
    assert role_acls(managed, BRIDGE_ROLE) == bridge_acls()
    assert role_acls(managed, device_role("dev-a")) == device_acls("dev-a")
    with (
        probe(managed.port, *BRIDGE) as bridge,
        probe(managed.port, "dev-a", token, client_id="dev-a") as device,
    ):
        assert bridge.subscribe("$share/hub/devices/+/attributes/reported")
        assert device.subscribe("devices/dev-a/attributes/desired")
        assert bridge.publish("devices/dev-a/attributes/desired", DESIRED)
        assert device.publish("devices/dev-a/attributes/reported", b'{"interval": 5}')
        wait_until(lambda: len(device.messages) == 1, message="desired at the device")
        wait_until(lambda: len(bridge.messages) == 1, message="reported at the bridge")
    assert sync()[-1] == "broker sync: 1 devices; in sync, nothing changed"
