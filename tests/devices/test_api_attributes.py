"""REST /api/v1/devices/{uid}/attributes/: read, merge desired, version, limits, own devices."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from tests.factories import make_device
from tests.telemetry.conftest_api import field_errors

pytestmark = pytest.mark.django_db

URL = "/api/v1/devices/{}/attributes/"


def test_attributes_of_a_new_device_are_empty(api, alice):
    make_device(alice, "d1")
    response = api.get(URL.format("d1"))
    assert response.status_code == 200
    assert response.json() == {"desired": {}, "version": 0, "reported": {}, "reported_at": None}


def test_patch_merges_desired_and_bumps_version(api, alice):
    make_device(alice, "d1")
    first = api.patch(
        URL.format("d1"), {"desired": {"interval": 5, "mode": {"a": 1, "b": 2}}}, format="json"
    )
    assert first.status_code == 200, first.content
    assert first.json()["version"] == 1
    second = api.patch(
        URL.format("d1"), {"desired": {"mode": {"b": None}, "setpoint": 21.5}}, format="json"
    )
    assert second.json()["desired"] == {"interval": 5, "mode": {"a": 1}, "setpoint": 21.5}
    assert second.json()["version"] == 2
    removed = api.patch(URL.format("d1"), {"desired": {"interval": None}}, format="json")
    assert removed.json()["desired"] == {"mode": {"a": 1}, "setpoint": 21.5}
    assert removed.json()["version"] == 3
    assert api.get(URL.format("d1")).json()["desired"] == removed.json()["desired"]


def test_a_patch_that_changes_nothing_keeps_the_version(api, alice):
    make_device(alice, "d1")
    api.patch(URL.format("d1"), {"desired": {"interval": 5}}, format="json")
    again = api.patch(URL.format("d1"), {"desired": {"interval": 5}}, format="json")
    assert again.json()["version"] == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "required"),
        ({"desired": [1]}, "JSON object"),
        ({"desired": "x"}, "JSON object"),
        ({"desired": {"bad name": 1}}, "does not match"),
        ({"desired": {"a": "\u0000"}}, "NUL"),
        ({"desired": {f"k{i}": i for i in range(5)}}, "HUB_ATTRIBUTES_MAX_KEYS"),
        ({"desired": {"k": "x" * 2000}}, "HUB_ATTRIBUTES_MAX_BYTES"),
    ],
)
def test_bad_patches_are_400s_naming_desired(api, alice, body, needle):
    make_device(alice, "d1")
    hub = {**settings.HUB, "ATTRIBUTES_MAX_KEYS": 4, "ATTRIBUTES_MAX_BYTES": 1024}
    with override_settings(HUB=hub):
        response = api.patch(URL.format("d1"), body, format="json")
    assert response.status_code == 400
    errors = field_errors(response)
    assert list(errors) == ["desired"]
    assert needle in str(errors["desired"])
    assert api.get(URL.format("d1")).json()["version"] == 0


def test_the_limit_counts_the_merged_object(api, alice):
    make_device(alice, "d1")
    hub = {**settings.HUB, "ATTRIBUTES_MAX_KEYS": 2}
    with override_settings(HUB=hub):
        first = api.patch(URL.format("d1"), {"desired": {"a": 1, "b": 2}}, format="json")
        assert first.status_code == 200
        refused = api.patch(URL.format("d1"), {"desired": {"c": 3}}, format="json")
        assert refused.status_code == 400
        assert "after the merge" in str(field_errors(refused)["desired"])
        swapped = api.patch(URL.format("d1"), {"desired": {"a": None, "c": 3}}, format="json")
        assert swapped.json()["desired"] == {"b": 2, "c": 3}


def test_another_users_device_is_404(api, bob):
    make_device(bob, "theirs")
    assert api.get(URL.format("theirs")).status_code == 404
    assert api.patch(URL.format("theirs"), {"desired": {"a": 1}}, format="json").status_code == 404
