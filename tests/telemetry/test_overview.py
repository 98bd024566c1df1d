"""The pages embed a bounded slice of each device's latest values and its metric count."""

from __future__ import annotations

import pytest

from devices.models import Device
from telemetry.overview import latest_slices
from telemetry.pages import DEVICE_METRICS, FLEET_VALUES
from tests.browser.test_pages import page_data
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import T0, store

pytestmark = pytest.mark.django_db


def test_slices_hold_the_first_metrics_by_name_and_the_count_of_all():
    owner = make_user("alice")
    make_device(owner, "d1")
    make_device(owner, "d2")
    make_device(owner, "empty")
    store([("d1", f"m{i:02d}", T0, i) for i in range(10)] + [("d2", "z", T0, "on")])
    slices = latest_slices(devices=Device.objects.filter(owner=owner), per_device=3)
    by_uid = {Device.objects.get(pk=pk).uid: found for pk, found in slices.items()}
    assert set(by_uid) == {"d1", "d2"}
    assert list(by_uid["d1"].values) == ["m00", "m01", "m02"]
    assert by_uid["d1"].total == 10
    assert by_uid["d1"].values["m02"][1] == 2
    assert (list(by_uid["d2"].values), by_uid["d2"].total) == (["z"], 1)


def test_fleet_and_device_pages_embed_a_bounded_slice(client, settings):
    # More metrics than the default limit allows: as stored before the limit, or past a raised one.
    settings.HUB = {**settings.HUB, "MAX_METRICS_PER_DEVICE": 10_000}
    owner = make_user("alice")
    make_device(owner, "d1")
    many = DEVICE_METRICS + 5
    store([("d1", f"m{i:04d}", T0, i) for i in range(many)])
    client.force_login(owner)
    fleet = page_data(client.get("/"))
    (device,) = fleet["devices"]
    assert sorted(device["latest"]) == [f"m{i:04d}" for i in range(FLEET_VALUES)]
    assert device["metrics"] == many
    assert fleet["fleet_values"] == FLEET_VALUES
    page = page_data(client.get("/devices/d1/"))["device"]
    assert len(page["latest"]) == DEVICE_METRICS
    assert page["metrics"] == many
