"""The admin for a staff user who is not a superuser (the demo user): their own rows only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client

from alarms.models import AlarmRule
from alarms.services import rule_create
from devices.models import Device
from hub.embedded import demo_admin_prepare
from tests.factories import make_device, make_user
from tests.support import without_random_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(client: Client) -> AbstractUser:
    user = make_user("demo")
    demo_admin_prepare(user)
    client.force_login(user)
    return user


def _rule(owner: AbstractUser, name: str) -> AlarmRule:
    rule = rule_create(
        owner=owner,
        device=None,
        name=name,
        metric="temperature",
        condition="above",
        threshold=30.0,
        severity="major",
    )
    assert isinstance(rule, AlarmRule)
    return rule


def test_demo_user_opens_the_admin_and_sees_only_their_devices_and_rules(
    client: Client, demo: AbstractUser, bob: AbstractUser
) -> None:
    make_device(demo, "sim-0001")
    make_device(bob, "bobs-boiler")
    _rule(demo, "Too hot")
    _rule(bob, "Bob's secret rule")
    index = client.get("/admin/")
    assert index.status_code == 200
    devices = client.get("/admin/devices/device/")
    assert devices.status_code == 200
    assert b"sim-0001" in devices.content
    assert b"bobs-boiler" not in devices.content
    # Nor in the owner filter; not looked for inside the page's random CSRF token.
    assert b"bob" not in without_random_text(devices.content)
    rules = client.get("/admin/alarms/alarmrule/")
    assert rules.status_code == 200
    assert b"Too hot" in rules.content and b"secret" not in rules.content


def test_another_users_device_cannot_be_opened_changed_or_chosen(
    client: Client, demo: AbstractUser, bob: AbstractUser
) -> None:
    bobs, _ = make_device(bob, "bobs-boiler")
    mine, _ = make_device(demo, "sim-0001")
    # Django's admin answers an object outside the queryset with a redirect to the index.
    opened = client.get(f"/admin/devices/device/{bobs.pk}/change/")
    assert opened.status_code == 302
    client.post(f"/admin/devices/device/{bobs.pk}/change/", {"name": "taken", "owner": demo.pk})
    bobs.refresh_from_db()
    assert (bobs.name, bobs.owner_id) != ("taken", demo.pk)
    # The owner choices hold the user alone: a device cannot be given to someone else.
    form = client.get(f"/admin/devices/device/{mine.pk}/change/")
    assert form.status_code == 200
    assert f'value="{bob.pk}"'.encode() not in form.content
    moved = client.post(
        f"/admin/devices/device/{mine.pk}/change/",
        {"name": "mine", "owner": bob.pk, "active": "on"},
    )
    assert moved.status_code == 200  # the form again, with the error
    mine.refresh_from_db()
    assert mine.owner_id == demo.pk
    # A rule cannot watch another user's device, even by its id in the raw-id field.
    fields = {
        "owner": demo.pk,
        "name": "watch",
        "metric": "temperature",
        "condition": "above",
        "threshold": "1",
        "severity": "major",
        "for_seconds": "0",
        "enabled": "on",
    }
    refused = client.post("/admin/alarms/alarmrule/add/", {**fields, "device": bobs.pk})
    assert refused.status_code == 200
    assert b'id="id_device_error"' in refused.content
    assert not AlarmRule.objects.filter(name="watch").exists()
    created = client.post("/admin/alarms/alarmrule/add/", {**fields, "device": mine.pk})
    assert created.status_code == 302
    assert AlarmRule.objects.get(name="watch").device_id == mine.pk


def test_superuser_still_sees_every_users_devices(client: Client, bob: AbstractUser) -> None:
    root = make_user("root")
    root.is_staff = root.is_superuser = True
    root.save()
    client.force_login(root)
    make_device(bob, "bobs-boiler")
    assert b"bobs-boiler" in client.get("/admin/devices/device/").content
    assert Device.objects.count() == 1
