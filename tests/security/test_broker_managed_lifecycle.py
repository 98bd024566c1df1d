"""A device's life at a managed Mosquitto: what a rotation, a disable and a deletion leave behind.

Nothing: the next owner of a uid gets no session, queued message or retained
message of the previous one, and a change the broker missed is found by sync.
"""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from devices import broker
from devices.dynsec import device_role
from devices.services import device_rotate_token
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
from tests.security.mqtt import ADMIN, BRIDGE, Probe, probe
from tests.support import wait_until
from tests.telemetry.conftest_api import api_client

pytestmark = pytest.mark.django_db(transaction=True)

WIFI = b'{"method": "set_wifi", "params": {"psk": "the-old-owners-secret"}}'


def nothing_pending(device: Probe, uid: str) -> list[tuple[str, bytes]]:
    """Subscribe to everything of the uid, then return what came before the device's own echo.

    Queued messages come right after CONNACK and retained ones right after the
    SUBACK, both before a message the device publishes afterwards.
    """
    assert device.subscribe(f"devices/{uid}/#")
    assert device.publish(f"devices/{uid}/telemetry", b'{"echo": 1}')
    wait_until(
        lambda: (f"devices/{uid}/telemetry", b'{"echo": 1}') in device.messages,
        message="the device's own message",
    )
    return [item for item in device.messages if item[1] != b'{"echo": 1}']


def test_after_delete_and_reregistration_the_old_connection_reaches_nothing_of_the_new_owner(
    managed,
):
    alice, bob = make_user("alice"), make_user("bob")
    _, old_token = make_device(alice, "dev-a")
    with probe(managed.port, "dev-a", old_token, client_id="dev-a") as old:
        assert old.subscribe("devices/dev-a/#")
        assert api_client(alice).delete("/api/v1/devices/dev-a/").status_code == 204
        assert old.closed.wait(1.0)
        response = api_client(bob).post("/api/v1/devices/", {"uid": "dev-a"}, format="json")
        assert response.status_code == 201
        with (
            probe(managed.port, "dev-a", response.json()["token"], client_id="dev-a") as new,
            probe(managed.port, *BRIDGE) as hub,
        ):
            assert new.subscribe("devices/dev-a/commands/+")
            assert hub.subscribe("devices/+/telemetry")
            # The old connection can publish nothing into the new device…
            assert not old.publish("devices/dev-a/telemetry", b'{"t": 1}')
            # … nor reconnect with its token,
            assert not accepted(managed, "dev-a", old_token)
            # … nor receive the new owner's commands.
            assert hub.publish("devices/dev-a/commands/c2", b'{"method": "open"}')
            wait_until(lambda: new.messages, message="the command at the new device")
            assert new.messages == [("devices/dev-a/commands/c2", b'{"method": "open"}')]
            assert old.messages == []
            assert hub.messages == []


def test_the_next_owner_of_a_uid_gets_no_session_queued_command_or_retained_message(managed):
    alice, bob = make_user("alice"), make_user("bob")
    _, old_token = make_device(alice, "dev-a")

    def old_device() -> Probe:
        return Probe(managed.port, "dev-a", old_token, client_id="dev-a", clean=False)

    # A persistent session subscribed to its commands, and retained messages under its
    # topics: its own, the hub's, and a "command" it could retain before its role was
    # narrowed (given back here for that).
    admin(
        managed,
        {
            "command": "addRoleACL",
            "rolename": device_role("dev-a"),
            "acltype": "publishClientSend",
            "topic": "devices/dev-a/commands/+",
            "allow": True,
        },
    )
    device = old_device()
    assert device.connect()
    assert device.subscribe("devices/dev-a/commands/+")
    assert device.publish("devices/dev-a/status", b"online", retain=True)
    assert device.publish("devices/dev-a/telemetry", b'{"t": 1}', retain=True)
    assert device.publish("devices/dev-a/commands/evil", WIFI, retain=True)
    device.close()
    with probe(managed.port, *BRIDGE) as hub:
        assert hub.publish("devices/dev-a/errors", b'{"error": "x"}', retain=True)
        assert hub.publish("devices/dev-a/commands/c1", WIFI)
    # The session is real: the device gets the command sent while it was away.
    with probe(managed.port, "dev-a", old_token, client_id="dev-a", clean=False) as device:
        assert device.session_present
        wait_until(lambda: ("devices/dev-a/commands/c1", WIFI) in device.messages, message="c1")
    with probe(managed.port, *BRIDGE) as hub:
        assert hub.publish("devices/dev-a/commands/c2", WIFI)  # queued for the old device
    assert {topic for topic, _ in retained_under(managed, "dev-a")} == {
        "devices/dev-a/status",
        "devices/dev-a/telemetry",
        "devices/dev-a/errors",
        "devices/dev-a/commands/evil",
    }

    assert api_client(alice).delete("/api/v1/devices/dev-a/").status_code == 204
    assert retained_under(managed, "dev-a") == []
    response = api_client(bob).post("/api/v1/devices/", {"uid": "dev-a"}, format="json")
    new_token = response.json()["token"]

    with probe(managed.port, "dev-a", new_token, client_id="dev-a", clean=False) as device:
        assert device.connack == "Success"
        assert device.session_present is False
        assert nothing_pending(device, "dev-a") == []


def test_registration_drops_what_the_broker_held_under_the_uid(managed):
    # Leftovers no deletion cleared (an earlier holder of the uid deleted before the hub
    # purged, a broker restored from a backup): a client, its session, retained messages.
    admin(
        managed,
        {
            "command": "createRole",
            "rolename": "old-device",
            "acls": [
                {"acltype": kind, "topic": "devices/dev-a/#", "allow": True}
                for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
            ],
        },
        {"command": "createClient", "username": "dev-a", "password": "old", "clientid": "dev-a"},
        {"command": "addClientRole", "username": "dev-a", "rolename": "old-device"},
    )
    with probe(managed.port, "dev-a", "old", client_id="dev-a", clean=False) as old:
        assert old.subscribe("devices/dev-a/commands/+")
        assert old.publish("devices/dev-a/status", b"online", retain=True)
        assert old.publish("devices/dev-a/commands/evil", WIFI, retain=True)
    with probe(managed.port, *BRIDGE) as hub:
        assert hub.publish("devices/dev-a/commands/c1", WIFI)
    assert len(retained_under(managed, "dev-a")) == 2

    _, token = make_device(make_user("bob"), "dev-a")

    assert not accepted(managed, "dev-a", "old")
    with probe(managed.port, "dev-a", token, client_id="dev-a", clean=False) as device:
        assert device.session_present is False
        assert nothing_pending(device, "dev-a") == []
    assert retained_under(managed, "dev-a") == []


def test_a_device_that_retained_thousands_of_topics_is_still_deleted_and_cleared(managed):
    alice = make_user("alice")
    _, token = make_device(alice, "dev-a")
    count = 2000
    with probe(managed.port, "dev-a", token, client_id="dev-a") as device:
        for number in range(count):
            device.client.publish(f"devices/dev-a/commands/{number}/reply", b"{}", retain=True)
        # Acknowledged after the ones before it on the same connection.
        assert device.publish("devices/dev-a/status", b"online", retain=True)
    assert len(retained_under(managed, "dev-a")) == count + 1
    assert api_client(alice).delete("/api/v1/devices/dev-a/").status_code == 204
    assert retained_under(managed, "dev-a") == []


def test_a_command_a_device_retained_before_its_role_was_narrowed_reaches_nobody(managed):
    _, token = make_device(make_user("alice"), "dev-a")
    widen = {
        "command": "addRoleACL",
        "rolename": device_role("dev-a"),
        "acltype": "publishClientSend",
        "topic": "devices/dev-a/commands/+",
        "allow": True,
    }
    admin(managed, widen)
    with probe(managed.port, "dev-a", token, client_id="dev-a") as device:
        assert device.publish("devices/dev-a/commands/evil", WIFI, retain=True)
    assert "repaired role hub-device-dev-a" in sync()
    with probe(managed.port, "dev-a", token, client_id="dev-a") as device:
        assert nothing_pending(device, "dev-a") == []
    # It is still there: the broker withholds it because its publisher may no longer.
    admin(managed, widen)
    with probe(managed.port, "dev-a", token, client_id="dev-a") as device:
        assert nothing_pending(device, "dev-a") == [("devices/dev-a/commands/evil", WIFI)]


@pytest.mark.parametrize("change", ["rotate", "disable"])
def test_rotating_or_disabling_discards_the_devices_session(managed, change):
    alice = make_user("alice")
    _, token = make_device(alice, "dev-a")
    with probe(managed.port, "dev-a", token, client_id="dev-a", clean=False) as device:
        assert device.subscribe("devices/dev-a/commands/+")
    with probe(managed.port, *BRIDGE) as hub:
        assert hub.publish("devices/dev-a/commands/c1", WIFI)
    api = api_client(alice)
    if change == "rotate":
        token = api.post("/api/v1/devices/dev-a/rotate-token/").json()["token"]
    else:
        for active in (False, True):
            response = api.patch("/api/v1/devices/dev-a/", {"active": active}, format="json")
            assert response.status_code == 200
    with probe(managed.port, "dev-a", token, client_id="dev-a", clean=False) as device:
        assert device.connack == "Success"
        assert device.session_present is False
        assert nothing_pending(device, "dev-a") == []


def test_a_rotation_the_broker_lost_is_found_and_locked_by_sync(managed):
    alice = make_user("alice")
    _, old = make_device(alice, "dev-a")
    backup = managed.state.read_bytes()
    api = api_client(alice)
    new = api.post("/api/v1/devices/dev-a/rotate-token/").json()["token"]
    # The broker's file restored from before the rotation: it holds the old token again.
    managed.stop()
    managed.state.write_bytes(backup)
    managed.start()
    assert accepted(managed, "dev-a", old)

    status, lines = dry_run()
    assert status == 1
    assert "would: locked client dev-a: its broker password was not the device's token" in lines
    lines = sync()
    assert "locked client dev-a: its broker password was not the device's token" in lines
    assert "rotate the token of these devices (their broker password is random): dev-a" in lines
    assert not accepted(managed, "dev-a", old)
    assert not accepted(managed, "dev-a", new)
    # Locked is where sync leaves it: nothing more to do until the owner rotates.
    assert dry_run()[0] == 0
    newest = api.post("/api/v1/devices/dev-a/rotate-token/").json()["token"]
    assert accepted(managed, "dev-a", newest)
    assert dry_run() == (0, ["broker sync: 1 devices; in sync, nothing changed"])


@pytest.mark.parametrize("missed_by", ["a process without MQTT_ADMIN_URL", "a rolled-back commit"])
def test_a_token_the_broker_and_the_database_disagree_on_is_locked_by_sync(
    managed, settings, missed_by
):
    device, old = make_device(make_user("alice"), "dev-a")
    if missed_by == "a process without MQTT_ADMIN_URL":
        # e.g. `hub shell` run without the variable: the database changes, the broker not.
        url, settings.MQTT_ADMIN_URL = settings.MQTT_ADMIN_URL, None
        new = device_rotate_token(device=device)
        settings.MQTT_ADMIN_URL = url
        assert accepted(managed, "dev-a", old)
    else:
        # The broker took the token, then the transaction did not commit.
        with pytest.raises(RuntimeError), transaction.atomic():
            new = device_rotate_token(device=device)
            raise RuntimeError("the request failed after the broker change")
        assert accepted(managed, "dev-a", new)
    assert "locked client dev-a: its broker password was not the device's token" in sync()
    assert not accepted(managed, "dev-a", old)
    assert not accepted(managed, "dev-a", new)


def test_deleting_a_user_removes_their_devices_broker_clients_sessions_and_retained(managed):
    alice, bob = make_user("alice"), make_user("bob")
    _, token_a = make_device(alice, "dev-a")
    _, token_b = make_device(alice, "dev-b")
    _, token_c = make_device(bob, "dev-c")
    with (
        probe(managed.port, "dev-a", token_a, client_id="dev-a", clean=False) as a,
        probe(managed.port, "dev-b", token_b, client_id="dev-b") as b,
    ):
        assert a.subscribe("devices/dev-a/commands/+")
        assert a.publish("devices/dev-a/status", b"online", retain=True)
        # As from `hub shell`: no service is called, the cascade deletes the devices.
        alice.delete()
        assert a.closed.wait(1.0)
        assert b.closed.wait(1.0)
    for uid in ("dev-a", "dev-b"):
        assert client_of(managed, uid) is None
        assert role_acls(managed, device_role(uid)) is None
    assert retained_under(managed, "dev-a") == []
    assert accepted(managed, "dev-c", token_c)
    _, token = make_device(bob, "dev-a")
    with probe(managed.port, "dev-a", token, client_id="dev-a", clean=False) as device:
        assert device.session_present is False
    assert dry_run() == (0, ["broker sync: 2 devices; in sync, nothing changed"])


def test_deleting_a_user_in_the_admin_while_the_broker_refuses_answers_503_and_keeps_all(
    managed, settings, client
):
    root = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    alice = make_user("alice")
    _, token = make_device(alice, "dev-a")
    client.force_login(root)
    url = f"/admin/auth/user/{alice.pk}/delete/"
    good = settings.MQTT_ADMIN_URL
    settings.MQTT_ADMIN_URL = good.replace(ADMIN[1], "not-the-password")
    response = client.post(url, {"post": "yes"})
    assert response.status_code == 503
    assert b"MQTT broker" in response.content
    assert get_user_model().objects.filter(pk=alice.pk).exists()
    assert alice.devices.filter(uid="dev-a").exists()
    assert accepted(managed, "dev-a", token)
    settings.MQTT_ADMIN_URL = good
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert client_of(managed, "dev-a") is None


def test_sync_waits_for_a_registration_in_flight_instead_of_purging_it(managed, monkeypatch):
    alice = make_user("alice")
    created, release = threading.Event(), threading.Event()
    run = broker._run

    def run_then_pause(client, commands, **options):
        run(client, commands, **options)
        if any(command.get("command") == "createClient" for command in commands):
            created.set()
            release.wait(10)

    monkeypatch.setattr(broker, "_run", run_then_pause)
    done: dict[str, object] = {}

    def in_thread(key, function):
        def target():
            try:
                done[key] = function()
            finally:
                connection.close()

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    registering = in_thread("token", lambda: make_device(alice, "dev-n")[1])
    assert created.wait(10)
    # At the broker, not yet in the database: it looks like a stray.
    assert client_of(managed, "dev-n")["textname"] == "telemetry hub device"
    syncing = in_thread("lines", sync)
    wait_until(
        lambda: advisory_lock_waiters() == 1 or not syncing.is_alive(),
        message="sync waiting for the uid's lock",
    )
    release.set()
    registering.join(10)
    syncing.join(10)
    assert accepted(managed, "dev-n", done["token"])
    assert not any("dev-n" in line for line in done["lines"])


def advisory_lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return cursor.fetchone()[0]
