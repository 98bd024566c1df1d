"""A private Mosquitto with dynamic security, managed by the hub: who gets in, and where."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError

from bridges.mqtt.config import BridgeConfig, BrokerAddress
from devices.dynsec import (
    DEVICE_TEXTNAME,
    credentials_accepted,
    device_acls,
    device_role,
)
from devices.models import Device
from devices.services import device_update
from telemetry.models import Reading
from tests.bridges.test_bridge import Running
from tests.factories import make_device, make_user
from tests.security.managed import (
    accepted,
    admin,
    client_of,
    dry_run,
    retained_under,
    role_acls,
    sync,
)
from tests.security.mqtt import ADMIN, BRIDGE, Probe, probe, settle
from tests.support import async_wait_until, free_port, wait_until
from tests.telemetry.conftest_api import api_client

# The hub changes the broker inside its transactions, and the broker's clients need to
# see what they commit: real transactions.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_wrong_token_is_refused_at_connect(managed):
    _, token = make_device(make_user("alice"), "dev-a")
    assert accepted(managed, "dev-a", token)
    for uid, password in [("dev-a", "wrong"), ("dev-a", ""), ("ghost", token), ("dev-a", None)]:
        assert not accepted(managed, uid, password), (uid, password)
    with probe(managed.port) as anonymous:
        assert anonymous.connack != "Success"
    # A device's client id is its uid: it cannot take over another client's session.
    assert not accepted(managed, "dev-a", token, client_id="hub-bridge")


def test_a_device_cannot_publish_or_subscribe_under_another_devices_topics(managed):
    alice = make_user("alice")
    _, token_a = make_device(alice, "dev-a")
    _, token_b = make_device(alice, "dev-b")
    with (
        probe(managed.port, "dev-a", token_a, client_id="dev-a") as a,
        probe(managed.port, "dev-b", token_b, client_id="dev-b") as b,
    ):
        assert b.subscribe("devices/dev-b/#")
        for topic in ("devices/dev-b/#", "devices/dev-b/commands/+", "devices/+/telemetry", "#"):
            assert not a.subscribe(topic), topic
        assert a.subscribe("devices/dev-a/commands/+")
        assert a.publish("devices/dev-a/telemetry", b'{"t": 1}')
        for topic in ("devices/dev-b/telemetry", "devices/dev-b/status", "devices/x/telemetry"):
            # Each from a new connection: Mosquitto closes one after refusing a publish.
            with probe(managed.port, "dev-a", token_a, client_id="dev-a") as again:
                assert not again.publish(topic, b'{"t": 1}'), topic
        settle()
        assert b.messages == []
    # A last will on another device's topic is dropped by the broker.
    with probe(managed.port, "dev-b", token_b, client_id="dev-b") as b:
        assert b.subscribe("devices/dev-b/#")
        with probe(
            managed.port, "dev-a", token_a, client_id="dev-a", will=("devices/dev-b/status", b"x")
        ) as a:
            a.drop()
        settle(1.0)
        assert b.messages == []


def test_a_device_publishes_only_its_device_to_hub_topics(managed):
    alice = make_user("alice")
    _, token = make_device(alice, "dev-a")
    with probe(managed.port, *BRIDGE) as hub:
        for topic in ("telemetry", "senml", "status", "commands/+/reply"):
            assert hub.subscribe(f"devices/+/{topic}"), topic
        with probe(managed.port, "dev-a", token, client_id="dev-a") as device:
            for topic in (
                "telemetry",
                "senml",
                "status",
                "commands/c1/reply",
                "attributes/reported",
            ):
                assert device.publish(f"devices/dev-a/{topic}", b"{}"), topic
        wait_until(lambda: len(hub.messages) == 4, message="the device's messages at the hub")
    # Not the hub-to-device topics, above all not commands/{id}: a "command" retained
    # there would come back to the device, and to the uid's next owner.
    for topic in (
        "devices/dev-a/commands/c1",
        "devices/dev-a/errors",
        "devices/dev-a/attributes/desired",
        "devices/dev-a/commands/c1/reply/more",
        "devices/dev-a/other",
        "devices/dev-a",
    ):
        for retain in (False, True):
            with probe(managed.port, "dev-a", token, client_id="dev-a") as device:
                assert not device.publish(topic, b'{"method": "x"}', retain=retain), topic
    assert retained_under(managed, "dev-a") == []


def test_after_rotation_the_old_token_is_refused_within_a_second(managed):
    alice = make_user("alice")
    _, old = make_device(alice, "dev-a")
    with probe(managed.port, "dev-a", old, client_id="dev-a") as connected:
        assert connected.connack == "Success"
        started = time.monotonic()
        response = api_client(alice).post("/api/v1/devices/dev-a/rotate-token/")
        assert response.status_code == 200
        wait_until(lambda: not accepted(managed, "dev-a", old), timeout=1.0, message="refusal")
        refused_after = time.monotonic() - started
        # The connection made with the old token is closed too.
        assert connected.closed.wait(1.0)
    assert refused_after < 1.0
    assert accepted(managed, "dev-a", response.json()["token"])


def test_a_disabled_device_is_refused_until_enabled(managed):
    alice = make_user("alice")
    _, token = make_device(alice, "dev-a")
    api = api_client(alice)
    with probe(managed.port, "dev-a", token, client_id="dev-a") as connected:
        assert (
            api.patch("/api/v1/devices/dev-a/", {"active": False}, format="json").status_code == 200
        )
        assert connected.closed.wait(1.0)
    assert not accepted(managed, "dev-a", token)
    assert client_of(managed, "dev-a")["disabled"] is True
    assert api.patch("/api/v1/devices/dev-a/", {"active": True}, format="json").status_code == 200
    assert accepted(managed, "dev-a", token)


def test_a_deleted_device_is_refused_and_its_account_is_gone(managed):
    alice = make_user("alice")
    _, token = make_device(alice, "dev-a")
    assert api_client(alice).delete("/api/v1/devices/dev-a/").status_code == 204
    assert not accepted(managed, "dev-a", token)
    assert client_of(managed, "dev-a") is None
    assert role_acls(managed, device_role("dev-a")) is None


def test_the_hubs_own_account_names_are_not_device_uids(managed):
    api = api_client(make_user("alice"))
    for uid in (BRIDGE[0], ADMIN[0], "hub-bridge-2"):
        response = api.post("/api/v1/devices/", {"uid": uid}, format="json")
        assert response.status_code == 400
        assert "uid" in response.json()
    assert credentials_accepted(managed.account_url(ADMIN), *BRIDGE)


@pytest.mark.parametrize("fault", ["admin refused", "broker unreachable"])
def test_a_change_the_broker_does_not_take_answers_503_and_changes_nothing(
    managed, settings, caplog, fault
):
    alice = make_user("alice")
    device, token = make_device(alice, "dev-a")
    good = settings.MQTT_ADMIN_URL
    settings.MQTT_ADMIN_URL = (
        good.replace(ADMIN[1], "not-the-password")
        if fault == "admin refused"
        else good.replace(f":{managed.port}", f":{free_port()}")
    )
    api = api_client(alice)
    with caplog.at_level(logging.ERROR, logger="devices.broker"):
        answers = {
            "register": api.post("/api/v1/devices/", {"uid": "dev-b"}, format="json"),
            "rotate": api.post("/api/v1/devices/dev-a/rotate-token/"),
            "disable": api.patch("/api/v1/devices/dev-a/", {"active": False}, format="json"),
            "delete": api.delete("/api/v1/devices/dev-a/"),
        }
    for action, response in answers.items():
        assert response.status_code == 503, (action, response.content)
        assert "MQTT broker" in response.json()["detail"], action
        assert "token" not in response.json(), action
    assert "could not set the token of device dev-a" in caplog.text
    # The database is as it was, and so is the broker: the old token still works.
    assert list(alice.devices.values_list("uid", "active", "token_hash")) == [
        ("dev-a", True, device.token_hash)
    ]
    assert accepted(managed, "dev-a", token)
    assert client_of(managed, "dev-b") is None
    settings.MQTT_ADMIN_URL = good
    assert dry_run() == (0, ["broker sync: 1 devices; in sync, nothing changed"])


def test_hub_device_add_fails_with_one_line_when_the_broker_refuses(managed, settings):
    make_user("alice")
    settings.MQTT_ADMIN_URL = settings.MQTT_ADMIN_URL.replace(ADMIN[1], "not-the-password")
    with pytest.raises(CommandError, match="cannot register 'dev-a': the MQTT broker"):
        call_command("device", "add", "dev-a", "--owner", "alice", stdout=StringIO())
    assert not Device.objects.filter(uid="dev-a").exists()


def test_sync_repairs_a_broker_changed_behind_the_hubs_back(managed):
    alice = make_user("alice")
    tokens = {uid: make_device(alice, uid)[1] for uid in ("dev-a", "dev-b", "dev-c", "dev-d")}
    device_update(device=alice.devices.get(uid="dev-d"), active=False)
    admin(
        managed,
        {"command": "deleteClient", "username": "dev-a"},
        {"command": "modifyClient", "username": "dev-b", "roles": [{"rolename": "admin"}]},
        {
            "command": "addRoleACL",
            "rolename": device_role("dev-c"),
            "acltype": "subscribePattern",
            "topic": "#",
            "allow": True,
        },
        {
            "command": "removeRoleACL",
            "rolename": device_role("dev-c"),
            "acltype": "publishClientSend",
            "topic": "devices/dev-c/#",
        },
        {"command": "enableClient", "username": "dev-d"},
        {
            "command": "createClient",
            "username": "ghost",
            "password": "x",
            "textname": DEVICE_TEXTNAME,
        },
        {"command": "createRole", "rolename": device_role("zombie")},
        {"command": "createClient", "username": "ops.monitor", "password": "ops-password"},
        {"command": "createGroup", "groupname": "ops"},
        {"command": "addGroupRole", "groupname": "ops", "rolename": device_role("dev-c")},
        {"command": "addGroupClient", "groupname": "ops", "username": "ops.monitor"},
        {
            "command": "setDefaultACLAccess",
            "acls": [{"acltype": "publishClientSend", "allow": True}],
        },
        {"command": "setClientPassword", "username": BRIDGE[0], "password": "changed"},
    )
    with probe(managed.port, "dev-b", tokens["dev-b"], client_id="dev-b") as b:
        assert b.subscribe("#")  # the tampering took effect
    assert accepted(managed, "dev-d", tokens["dev-d"])

    lines = sync()

    assert "created client dev-a (enabled)" in lines
    assert "rotate the token of these devices (their broker password is random): dev-a" in lines
    assert not accepted(managed, "dev-a", tokens["dev-a"])
    with probe(managed.port, "dev-b", tokens["dev-b"], client_id="dev-b") as b:
        assert b.connack == "Success"
        assert not b.subscribe("#")
        assert b.subscribe("devices/dev-b/#")
    assert role_acls(managed, device_role("dev-c")) == device_acls("dev-c")
    assert not accepted(managed, "dev-d", tokens["dev-d"])
    assert client_of(managed, "ghost") is None
    assert role_acls(managed, device_role("zombie")) is None
    assert client_of(managed, "ops.monitor") is not None
    assert "left alone (not the hub's): client ops.monitor" in lines
    (group,) = admin(managed, {"command": "getGroup", "groupname": "ops"})
    assert group["data"]["group"]["roles"] == []
    (default,) = admin(managed, {"command": "getDefaultACLAccess"})
    assert not any(acl["allow"] for acl in default["data"]["acls"])
    assert credentials_accepted(managed.account_url(ADMIN), *BRIDGE)
    # Idempotent: a second run finds nothing to do.
    assert sync()[-1] == "broker sync: 4 devices; in sync, nothing changed"
    assert sync(dry_run=True)[-1] == "broker sync: 4 devices; in sync, nothing changed"


def test_roles_the_hub_gives_stay_linked_so_deleting_one_is_safe(managed):
    # Mosquitto 2.0 does not link a role given in createClient to the client: deleting
    # the role then leaves the client pointing at freed memory.
    make_device(make_user("alice"), "dev-a")
    admin(managed, {"command": "deleteClient", "username": "dev-a"})
    sync()  # creates the client again
    for username, rolename in (("dev-a", device_role("dev-a")), (BRIDGE[0], "hub-bridge")):
        admin(managed, {"command": "deleteRole", "rolename": rolename})
        assert client_of(managed, username)["roles"] == [], username
    assert sync()[-1] == "broker sync: 1 devices; 4 changes"


def test_dry_run_reports_without_changing_and_exits_1_when_changes_are_needed(managed):
    make_device(make_user("alice"), "dev-a")
    assert dry_run() == (0, ["broker sync: 1 devices; in sync, nothing changed"])
    admin(managed, {"command": "deleteClient", "username": "dev-a"})
    status, lines = dry_run()
    assert status == 1
    assert "would: created client dev-a (enabled)" in lines
    assert lines[-1] == "broker sync: 1 devices; 1 changes needed"
    assert client_of(managed, "dev-a") is None


def test_the_bridge_account_may_do_what_the_bridge_needs_and_no_more(managed):
    _, token = make_device(make_user("alice"), "dev-a")
    with (
        probe(managed.port, *BRIDGE) as bridge,
        probe(managed.port, "dev-a", token, client_id="dev-a") as device,
    ):
        assert device.subscribe("devices/dev-a/#")
        for topic in ("telemetry", "senml", "status", "commands/+/reply"):
            assert bridge.subscribe(f"devices/+/{topic}"), topic
            assert bridge.subscribe(f"$share/hub/devices/+/{topic}"), topic
        for topic in ("#", "devices/#", "devices/+/errors", "devices/+/commands/+", "$SYS/#"):
            assert not bridge.subscribe(topic), topic
        assert bridge.publish("devices/dev-a/errors", b"{}")
        assert bridge.publish("devices/dev-a/commands/c1", b"{}")
        wait_until(lambda: len(device.messages) == 2, message="an error and a command")
    for topic in (
        "devices/dev-a/telemetry",
        "devices/dev-a/commands/c1/reply",
        "$CONTROL/dynamic-security/v1",
    ):
        with probe(managed.port, *BRIDGE) as bridge:
            assert not bridge.publish(topic, b'{"ok": true}'), topic


def test_sync_needs_the_admin_url():
    with pytest.raises(Exception, match="MQTT_ADMIN_URL is not set"):
        sync()


async def test_the_bridge_works_through_its_own_account(managed):
    owner = await database_sync_to_async(make_user)("alice")
    _, token = await database_sync_to_async(make_device)(owner, "dev-a")
    config = BridgeConfig(
        broker=BrokerAddress(port=managed.port, username=BRIDGE[0], password=BRIDGE[1]),
        client_id="hub-bridge-1",
        shared_group="hub",
        batch_max_delay_s=0.02,
    )
    device = Probe(managed.port, "dev-a", token, client_id="dev-a")
    assert await asyncio.to_thread(device.connect)
    assert await asyncio.to_thread(device.subscribe, "devices/dev-a/errors")
    async with Running(config) as running:
        await asyncio.to_thread(device.publish, "devices/dev-a/telemetry", b'{"t": 21.5}')
        await asyncio.to_thread(device.publish, "devices/dev-a/telemetry", b"{not json")
        await async_wait_until(
            lambda: database_sync_to_async(Reading.objects.filter(device__uid="dev-a").count)(),
            message="the reading stored",
        )
        await async_wait_until(_async(lambda: device.messages), message="the error reported")
        assert running.bridge.stats.rejections == {"invalid_json": 1}
    device.close()
    assert json.loads(device.messages[0][1])["error"].startswith("invalid_json")


def _async(function):
    async def wrapper():
        return function()

    return wrapper
