"""Commands and presence without a broker: REST, the services and the device events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from devices.events import ReplyEvent, SentEvent, StatusEvent
from devices.models import Command, CommandStatus, Device, PresenceEvent
from devices.services import (
    command_create,
    commands_expire,
    devices_silent_offline,
    events_apply,
    presence_set,
)
from tests.factories import make_device

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def ms(moment) -> int:
    return int(moment.timestamp() * 1000)


def test_post_command_stores_it_pending_and_get_shows_it(api, alice):
    make_device(alice, "c1")
    response = api.post(
        "/api/v1/devices/c1/commands/",
        {"method": "set_interval", "params": {"seconds": 5}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["device"] == "c1" and body["timeout"] == 30
    detail = api.get(f"/api/v1/commands/{body['id']}/").json()
    assert detail["method"] == "set_interval" and detail["params"] == {"seconds": 5}
    listing = api.get("/api/v1/devices/c1/commands/").json()
    assert [c["id"] for c in listing["results"]] == [body["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"params": {}}, "method"),
        ({"method": 5}, "method"),
        ({"method": "x" * 65}, "method"),
        ({"method": "m", "params": [1]}, "params"),
        ({"method": "m", "timeout": 3601}, "timeout"),
        ({"method": "m", "timeout": 0}, "timeout"),
    ],
)
def test_bad_command_is_a_400_naming_the_field(api, alice, body, field):
    make_device(alice, "c2")
    response = api.post("/api/v1/devices/c2/commands/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_others_commands_and_devices_are_404(api, bob):
    device, _ = make_device(bob, "theirs")
    command = command_create(device=device, method="m", params={})
    assert api.get(f"/api/v1/commands/{command.id}/").status_code == 404
    assert (
        api.post("/api/v1/devices/theirs/commands/", {"method": "m"}, format="json").status_code
        == 404
    )
    assert api.get("/api/v1/devices/theirs/presence/").status_code == 404


def test_sent_then_reply_moves_the_command_to_succeeded(alice):
    device, _ = make_device(alice, "r1")
    command = command_create(device=device, method="m", params={})
    now = timezone.now()
    ok = {"ok": True, "result": {"x": 1}}
    applied = events_apply(events=[SentEvent(command.id, ms(now))], now=now)
    assert [c.status for c in applied.commands] == ["sent"]
    applied = events_apply(events=[ReplyEvent("r1", command.id, ok, ms(now))], now=now)
    assert [(c.status, c.result) for c in applied.commands] == [("succeeded", {"x": 1})]
    # The same reply again (MQTT redelivers) changes nothing and is not an error.
    again = events_apply(events=[ReplyEvent("r1", command.id, ok, ms(now))], now=now)
    assert again.commands == [] and again.rejected == []
    # A different reply to a finished command is refused.
    failed = {"ok": False, "error": "no"}
    late = events_apply(events=[ReplyEvent("r1", command.id, failed, ms(now))], now=now)
    assert late.rejected and "already succeeded" in late.rejected[0][2]


def test_reply_for_another_devices_command_is_rejected(alice):
    make_device(alice, "mine")
    other, _ = make_device(alice, "other")
    command = command_create(device=other, method="m", params={})
    now = timezone.now()
    applied = events_apply(events=[ReplyEvent("mine", command.id, {"ok": True}, ms(now))], now=now)
    assert applied.rejected == [
        (
            "mine",
            f"devices/mine/commands/{command.id}/reply",
            f"no command {command.id!r} for device 'mine'",
            "command_rejected",
        )
    ]
    assert Command.objects.get(id=command.id).status == CommandStatus.PENDING


@pytest.mark.parametrize(
    "reply", [None, [], {"ok": "yes"}, {"ok": False}, {"ok": False, "error": 3}]
)
def test_malformed_reply_is_rejected(alice, reply):
    device, _ = make_device(alice, "bad-reply")
    command = command_create(device=device, method="m", params={})
    now = timezone.now()
    applied = events_apply(events=[ReplyEvent("bad-reply", command.id, reply, ms(now))], now=now)
    assert len(applied.rejected) == 1


def test_overdue_commands_expire(alice):
    device, _ = make_device(alice, "slow")
    command = command_create(device=device, method="m", params={}, timeout=1)
    assert commands_expire(now=timezone.now()) == []
    expired = commands_expire(now=timezone.now() + timedelta(seconds=2))
    assert [c.id for c in expired] == [command.id]
    assert Command.objects.get(id=command.id).status == CommandStatus.EXPIRED


def test_status_events_record_presence_and_release_pending_commands(alice):
    device, _ = make_device(alice, "p1")
    command = command_create(device=device, method="m", params={})
    now = timezone.now()
    applied = events_apply(events=[StatusEvent("p1", True, ms(now))], now=now)
    assert [(change.uid, change.online) for change in applied.presence] == [("p1", True)]
    assert [c.id for c in applied.to_publish] == [command.id]
    again = events_apply(events=[StatusEvent("p1", True, ms(now))], now=now)
    assert again.presence == [] and again.to_publish == []
    events_apply(events=[StatusEvent("p1", False, ms(now))], now=now)
    assert list(PresenceEvent.objects.filter(device=device).values_list("online", "source")) == [
        (False, "status"),
        (True, "status"),
    ]


def test_silent_device_without_status_topic_goes_offline(alice):
    quiet, _ = make_device(alice, "quiet")
    talker, _ = make_device(alice, "talker")
    old = timezone.now() - timedelta(seconds=300)
    Device.objects.filter(pk__in=[quiet.pk, talker.pk]).update(online=True, last_seen=old)
    presence_set(device=talker, online=True, at=old, source="status")  # it reports its status
    silent = devices_silent_offline(now=timezone.now(), after_s=120)
    assert [d.uid for d in silent] == ["quiet"]
    assert not Device.objects.get(pk=quiet.pk).online and Device.objects.get(pk=talker.pk).online
    page = PresenceEvent.objects.filter(device=quiet).values_list("online", "source")
    assert list(page) == [(False, "silence")]


def test_presence_endpoint_lists_newest_first(api, alice):
    device, _ = make_device(alice, "hist")
    base = timezone.now()
    for i, online in enumerate([True, False, True]):
        presence_set(device=device, online=online, at=base + timedelta(seconds=i), source="status")
    results = api.get("/api/v1/devices/hist/presence/").json()["results"]
    assert [r["online"] for r in results] == [True, False, True]
    assert results[0]["at"] > results[1]["at"] > results[2]["at"]
