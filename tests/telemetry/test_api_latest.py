"""Latest values of one device and of several devices in one call."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import T0, api_client, field_errors, response_json, store

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return make_user("alice")


@pytest.fixture
def api(alice):
    return api_client(alice)


def test_device_latest_gives_each_metrics_newest_value_in_its_sent_type(api, alice):
    make_device(alice, "d1")
    store(
        [
            ("d1", "temperature", T0, 20.0),
            ("d1", "temperature", T0 + 1500, 21.5),
            ("d1", "count", T0, 42),
            ("d1", "door_open", T0 + 7, False),
            ("d1", "firmware", T0 + 123, "1.4.2"),
        ]
    )
    response = api.get("/api/v1/devices/d1/latest/")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "count": {"ts": "2025-11-26T06:00:00.000Z", "value": 42, "unit": None},
        "door_open": {"ts": "2025-11-26T06:00:00.007Z", "value": False, "unit": None},
        "firmware": {"ts": "2025-11-26T06:00:00.123Z", "value": "1.4.2", "unit": None},
        "temperature": {"ts": "2025-11-26T06:00:01.500Z", "value": 21.5, "unit": None},
    }
    assert type(body["count"]["value"]) is int


def test_device_latest_of_a_silent_device_is_empty(api, alice):
    make_device(alice, "d1")
    assert api.get("/api/v1/devices/d1/latest/").json() == {}


def test_device_latest_of_others_and_unknown_devices_is_404(api):
    bob = make_user("bob")
    make_device(bob, "bobs")
    store([("bobs", "t", T0, 1.0)])
    for uid in ("bobs", "nope", "bad uid", "x" * 65):
        assert api.get(f"/api/v1/devices/{uid}/latest/").status_code == 404


def test_latest_requires_authentication(alice):
    make_device(alice, "d1")
    assert APIClient().get("/api/v1/devices/d1/latest/").status_code == 401
    assert APIClient().get("/api/v1/latest/").status_code == 401


def test_latest_of_all_own_devices_in_one_query(api, alice):
    for uid in ("a", "b", "silent"):
        make_device(alice, uid)
    bob = make_user("bob")
    make_device(bob, "bobs")
    store(
        [("a", "t", T0, 1.0), ("a", "h", T0, 50), ("b", "t", T0 + 1, True), ("bobs", "t", T0, 9.0)]
    )
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/api/v1/latest/")
        body = response_json(response)  # streamed: the query runs as it is read
    assert response.status_code == 200
    assert response.streaming
    assert body == {
        "a": {
            "h": {"ts": "2025-11-26T06:00:00.000Z", "value": 50, "unit": None},
            "t": {"ts": "2025-11-26T06:00:00.000Z", "value": 1.0, "unit": None},
        },
        "b": {"t": {"ts": "2025-11-26T06:00:00.001Z", "value": True, "unit": None}},
        "silent": {},
    }
    # One for the token, one for the values.
    assert len([q for q in queries.captured_queries if "telemetry_latest" in q["sql"]]) == 1
    assert len(queries.captured_queries) <= 2


def test_latest_of_chosen_devices_leaves_out_foreign_and_unknown_uids(api, alice):
    make_device(alice, "a")
    make_device(alice, "b")
    bob = make_user("bob")
    make_device(bob, "bobs")
    store([("a", "t", T0, 1.0), ("b", "t", T0, 2.0), ("bobs", "t", T0, 3.0)])
    response = api.get("/api/v1/latest/", {"devices": "b,bobs,ghost,bad uid,,b"})
    assert response.status_code == 200
    assert response_json(response) == {
        "b": {"t": {"ts": "2025-11-26T06:00:00.000Z", "value": 2.0, "unit": None}}
    }
    assert response_json(api.get("/api/v1/latest/", {"devices": "ghost"})) == {}
    # A blank list means all own devices.
    assert set(response_json(api.get("/api/v1/latest/", {"devices": ""}))) == {"a", "b"}


def test_latest_with_too_many_devices_is_400_naming_devices(api):
    uids = ",".join(f"d{i}" for i in range(1001))
    assert "devices" in field_errors(api.get("/api/v1/latest/", {"devices": uids}))
    assert "format" in field_errors(api.get("/api/v1/latest/", {"format": "csv"}))
