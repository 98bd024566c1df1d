"""The device endpoints: tokens, list, register, read, change, delete, rotate; only own devices."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from devices.models import Device
from devices.services import device_authenticate
from telemetry.models import LatestValue, Reading, RollupHour, RollupMinute
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import T0, api_client, field_errors, response_json, store

pytestmark = pytest.mark.django_db

RFC3339_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def test_token_endpoint_returns_the_users_token(alice):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": "pw-for-tests"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/devices/").status_code == 200


def test_token_endpoint_rejects_bad_credentials_with_400(alice):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": "wrong"}, format="json"
    )
    assert field_errors(response)
    missing = APIClient().post("/api/v1/auth/token/", {}, format="json")
    assert set(field_errors(missing)) == {"username", "password"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/devices/"),
        ("post", "/api/v1/devices/"),
        ("get", "/api/v1/devices/d1/"),
        ("patch", "/api/v1/devices/d1/"),
        ("delete", "/api/v1/devices/d1/"),
        ("post", "/api/v1/devices/d1/rotate-token/"),
    ],
)
def test_endpoints_require_authentication(alice, method, path):
    make_device(alice, "d1")
    response = getattr(APIClient(), method)(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert getattr(bad, method)(path).status_code == 401
    assert Device.objects.filter(uid="d1").exists()


def test_session_authentication_works(alice, client):
    make_device(alice, "d1")
    client.force_login(alice)
    response = client.get("/api/v1/devices/d1/")
    assert response.status_code == 200
    assert response.json()["uid"] == "d1"


def test_register_returns_the_device_and_its_token_once(api, alice):
    response = api.post("/api/v1/devices/", {"uid": "kitchen-1", "name": "Kitchen"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"uid", "name", "active", "online", "last_seen", "created", "token"}
    assert (body["uid"], body["name"], body["active"], body["online"]) == (
        "kitchen-1",
        "Kitchen",
        True,
        False,
    )
    assert body["last_seen"] is None
    assert RFC3339_MS.fullmatch(body["created"])
    assert response["Location"] == "/api/v1/devices/kitchen-1/"
    device = Device.objects.get(uid="kitchen-1")
    assert device.owner == alice
    assert device_authenticate(uid="kitchen-1", token=body["token"]) == device
    # The token is never shown again.
    assert "token" not in api.get("/api/v1/devices/kitchen-1/").json()
    listed = api.get("/api/v1/devices/")
    assert listed.streaming
    listed_text = b"".join(listed.streaming_content).decode()
    assert all("token" not in item for item in json.loads(listed_text))
    assert body["token"] not in listed_text


def test_register_without_name_gives_empty_name(api):
    response = api.post("/api/v1/devices/", {"uid": "d1"}, format="json")
    assert response.status_code == 201
    assert response.json()["name"] == ""


@pytest.mark.parametrize(
    "uid", ["", "-starts-with-dash", "has space", "x" * 65, "ünï", "a/b", "a\x00b", "a\n", 7]
)
def test_register_with_invalid_uid_is_400_naming_uid(api, uid):
    response = api.post("/api/v1/devices/", {"uid": uid, "name": "x"}, format="json")
    assert "uid" in field_errors(response)
    assert not Device.objects.exists()


def test_register_with_taken_uid_is_400_naming_uid_even_if_another_user_has_it(api, bob):
    make_device(bob, "taken")
    response = api.post("/api/v1/devices/", {"uid": "taken"}, format="json")
    assert field_errors(response) == {"uid": ["a device with this uid already exists"]}


def test_register_without_uid_or_with_long_name_is_400(api):
    assert "uid" in field_errors(api.post("/api/v1/devices/", {"name": "x"}, format="json"))
    long_name = api.post("/api/v1/devices/", {"uid": "d1", "name": "n" * 129}, format="json")
    assert "name" in field_errors(long_name)


def test_register_with_malformed_json_is_400(api):
    response = api.post("/api/v1/devices/", "{not json", content_type="application/json")
    assert response.status_code == 400


def test_list_shows_only_own_devices_in_uid_order(api, alice, bob):
    for uid in ("b-dev", "a-dev"):
        make_device(alice, uid)
    make_device(bob, "bobs")
    response = api.get("/api/v1/devices/")
    assert response.status_code == 200
    assert [item["uid"] for item in response_json(response)] == ["a-dev", "b-dev"]


def test_superuser_sees_only_own_devices_through_the_api(bob):
    root = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    make_device(bob, "bobs")
    make_device(root, "roots")
    client = api_client(root)
    assert [item["uid"] for item in response_json(client.get("/api/v1/devices/"))] == ["roots"]
    assert client.get("/api/v1/devices/bobs/").status_code == 404


def test_detail_shows_device_fields_with_millisecond_utc_times(api, alice):
    make_device(alice, "d1")
    store([("d1", "t", T0 + 5, 1.0)])
    body = api.get("/api/v1/devices/d1/").json()
    assert body["uid"] == "d1" and body["online"] is True
    assert body["last_seen"] == "2026-01-01T00:00:00.000Z"
    assert RFC3339_MS.fullmatch(body["created"])


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_others_and_unknown_devices_are_404_never_403(api, bob, method):
    make_device(bob, "bobs")
    for uid in ("bobs", "nobody", "bad%20uid", "a" * 70):
        response = getattr(api, method)(f"/api/v1/devices/{uid}/", {"name": "x"}, format="json")
        assert response.status_code == 404, uid
    assert Device.objects.filter(uid="bobs", name="").exists()


def test_rotate_token_of_others_device_is_404_and_leaves_it(api, bob):
    device, token = make_device(bob, "bobs")
    assert api.post("/api/v1/devices/bobs/rotate-token/").status_code == 404
    assert device_authenticate(uid="bobs", token=token) == device


def test_patch_changes_name_and_active_only(api, alice):
    make_device(alice, "d1")
    response = api.patch(
        "/api/v1/devices/d1/",
        {"name": "Garage", "active": False, "uid": "renamed", "online": True},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["uid"], body["name"], body["active"], body["online"]) == (
        "d1",
        "Garage",
        False,
        False,
    )
    device = Device.objects.get(uid="d1")
    assert (device.name, device.active) == ("Garage", False)


def test_disabled_device_no_longer_authenticates(api, alice):
    _, token = make_device(alice, "d1")
    api.patch("/api/v1/devices/d1/", {"active": False}, format="json")
    assert device_authenticate(uid="d1", token=token) is None


def test_patch_with_bad_values_is_400_naming_the_field(api, alice):
    make_device(alice, "d1")
    assert "active" in field_errors(
        api.patch("/api/v1/devices/d1/", {"active": "maybe"}, format="json")
    )
    assert "name" in field_errors(
        api.patch("/api/v1/devices/d1/", {"name": "x" * 200}, format="json")
    )
    assert "name" in field_errors(
        api.patch("/api/v1/devices/d1/", {"name": "a\x00b"}, format="json")
    )


def test_put_is_not_allowed(api, alice):
    make_device(alice, "d1")
    assert api.put("/api/v1/devices/d1/", {"name": "x"}, format="json").status_code == 405


def test_delete_removes_device_and_its_telemetry(api, alice):
    make_device(alice, "d1")
    make_device(alice, "d2")
    store([("d1", "t", T0 + i, float(i)) for i in range(5)] + [("d2", "t", T0, 1.0)])
    response = api.delete("/api/v1/devices/d1/")
    assert response.status_code == 204
    assert list(Device.objects.values_list("uid", flat=True)) == ["d2"]
    for model in (Reading, RollupMinute, RollupHour, LatestValue):
        assert model.objects.count() == 1
    assert api.get("/api/v1/devices/d1/").status_code == 404


def test_rotate_token_shows_a_new_token_and_the_old_one_stops_working(api, alice):
    device, old = make_device(alice, "d1")
    response = api.post("/api/v1/devices/d1/rotate-token/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"uid", "token"} and body["uid"] == "d1"
    assert body["token"] != old
    assert device_authenticate(uid="d1", token=old) is None
    assert device_authenticate(uid="d1", token=body["token"]) == device


def test_rotate_token_needs_post(api, alice):
    make_device(alice, "d1")
    assert api.get("/api/v1/devices/d1/rotate-token/").status_code == 405


def test_unknown_format_parameter_is_400_naming_format(api, alice):
    make_device(alice, "d1")
    for path in ("/api/v1/devices/", "/api/v1/devices/d1/"):
        assert "format" in field_errors(api.get(path, {"format": "xml"}))
    assert api.get("/api/v1/devices/", {"format": "json"}).status_code == 200


def test_browsable_api_renders(api, alice):
    make_device(alice, "d1")
    response = api.get("/api/v1/devices/d1/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"d1" in response.content


def test_another_user_can_register_after_a_delete_frees_the_uid(api, alice, bob):
    make_device(alice, "d1")
    api.delete("/api/v1/devices/d1/")
    response = api_client(bob).post("/api/v1/devices/", {"uid": "d1"}, format="json")
    assert response.status_code == 201


def test_users_are_independent(alice):
    carol = make_user("carol")
    make_device(carol, "c1")
    assert response_json(api_client(alice).get("/api/v1/devices/")) == []
