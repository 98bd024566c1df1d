"""`hub broker sync` removes what could cross a device: rogue, admin and squatting clients."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.db import connection

from tests.factories import make_device, make_user
from tests.security.managed import accepted, admin, client_of, dry_run, retained_under, sync
from tests.security.mqtt import ADMIN, BRIDGE, probe
from tests.support import hub_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_sync_removes_rogue_device_clients_other_admins_and_clients_bound_to_a_devices_id(
    managed,
):
    _, token = make_device(make_user("alice"), "dev-a")
    admin(
        managed,
        {
            "command": "createRole",
            "rolename": "ops-devices",
            "acls": [
                {"acltype": kind, "topic": "devices/#", "allow": True}
                for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
            ],
        },
        # Named like a device, with no such device.
        {"command": "createClient", "username": "dev-zz", "password": "rogue"},
        {"command": "addClientRole", "username": "dev-zz", "rolename": "ops-devices"},
        # Admins besides the hub's: directly and through a group.
        {"command": "createClient", "username": "ops.admin", "password": "x"},
        {"command": "addClientRole", "username": "ops.admin", "rolename": "admin"},
        {"command": "createGroup", "groupname": "admins"},
        {"command": "addGroupRole", "groupname": "admins", "rolename": "admin"},
        {"command": "createClient", "username": "ops.grouped", "password": "x"},
        {"command": "addGroupClient", "groupname": "admins", "username": "ops.grouped"},
        # Bound to a device's client id, and to a bridge's.
        {"command": "createClient", "username": "ops.squat", "password": "x", "clientid": "dev-a"},
        {
            "command": "createClient",
            "username": "ops.bridge",
            "password": "x",
            "clientid": "hub-bridge-1",
        },
        # Not the hub's and harmless: bound to its own id; one unbound, which is only listed.
        {
            "command": "createClient",
            "username": "ops.monitor",
            "password": "x",
            "clientid": "ops.monitor",
        },
        {"command": "createClient", "username": "ops.loose", "password": "x"},
    )
    # The harm is real: the rogue holds a session and retains under its would-be topics,
    with probe(managed.port, "dev-zz", "rogue", client_id="dev-zz", clean=False) as rogue:
        assert rogue.subscribe("devices/dev-zz/commands/+")
        assert rogue.publish("devices/dev-zz/commands/c1", b'{"method": "evil"}', retain=True)
    # … and the squatter takes the device's session from it.
    with (
        probe(managed.port, "dev-a", token, client_id="dev-a") as device,
        probe(managed.port, "ops.squat", "x", client_id="dev-a") as squatter,
    ):
        assert squatter.connack == "Success"
        assert device.closed.wait(1.0)

    status, lines = dry_run()
    admins = "held the admin role admin (only MQTT_ADMIN_URL's account may)"
    bound = "which is a device's or the hub's"
    expected = [
        f"deleted client ops.admin: it {admins}",
        f"deleted client ops.bridge: bound to client id hub-bridge-1, {bound}",
        f"deleted client ops.grouped: it {admins}",
        f"deleted client ops.squat: bound to client id dev-a, {bound}",
        "purged dev-zz (no such device): client, roles, session, retained messages",
    ]
    assert status == 1
    assert [line for line in lines if line.startswith("would: ")] == [
        f"would: {line}" for line in expected
    ]
    assert client_of(managed, "ops.admin") is not None

    lines = sync()

    assert lines[: len(expected)] == expected
    assert "left alone (not the hub's): client ops.monitor" in lines
    assert "left alone (not the hub's): client ops.loose" in lines
    assert any(line.startswith("warning: ") and line.endswith(": ops.loose") for line in lines)
    for username in ("dev-zz", "ops.admin", "ops.grouped", "ops.squat", "ops.bridge"):
        assert client_of(managed, username) is None, username
    for username in ("ops.monitor", "ops.loose", ADMIN[0], BRIDGE[0]):
        assert client_of(managed, username) is not None, username
    assert accepted(managed, "dev-a", token)
    assert retained_under(managed, "dev-zz") == []
    # The rogue's session is gone: a device registered as dev-zz later starts clean.
    with probe(managed.port, *ADMIN, client_id="dev-zz", clean=False) as taker:
        assert taker.session_present is False
    assert dry_run()[0] == 0


def test_hub_broker_sync_dry_run_exits_1_when_changes_are_needed_and_0_in_sync(managed):
    make_device(make_user("alice"), "dev-a")
    env = hub_env(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        SECRET_KEY="test-only-secret-key-not-for-production",
        MQTT_URL=managed.account_url(BRIDGE),
        MQTT_ADMIN_URL=managed.account_url(ADMIN),
    )

    def dry_run_status() -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-m", "hub", "broker", "sync", "--dry-run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    assert dry_run_status()[0] == 0
    admin(managed, {"command": "disableClient", "username": "dev-a"})
    status, output = dry_run_status()
    assert status == 1, output
    assert "would: enabled client dev-a" in output
