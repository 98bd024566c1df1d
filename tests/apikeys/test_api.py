"""The API key endpoints (CONTRACT §8): shown once, stored hashed, validated by field, revoked."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from apikeys.models import ApiKey
from tests.apikeys.conftest import bearer, make_key
from tests.telemetry.conftest_api import api_client, field_errors

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/api-keys/"


def test_key_is_shown_once_and_stored_only_as_a_hash(alice, fleet):
    api = api_client(alice)
    response = api.post(
        KEYS, {"name": "grafana", "scope": "read", "devices": ["a-2", "a-1"]}, format="json"
    )
    assert response.status_code == 201, response.content
    created = response.json()
    text = created["key"]
    prefix, secret = text.removeprefix("hub_").split("_", 1)
    assert created | {"id": 0, "created": ""} == {
        "id": 0,
        "name": "grafana",
        "prefix": f"hub_{prefix}",
        "scope": "read",
        "devices": ["a-1", "a-2"],
        "expires": None,
        "state": "active",
        "revoked_at": None,
        "last_used_at": None,
        "created": "",
        "key": text,
    }
    assert response["Location"] == f"{KEYS}{created['id']}/"
    row = ApiKey.objects.get(pk=created["id"])
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = [str(value) for value in ApiKey.objects.filter(pk=row.pk).values().get().values()]
    assert not any(secret in value for value in stored)
    # Never again: neither the list nor the key's own page carries it.
    listed = api.get(KEYS)
    assert listed.status_code == 200 and secret not in listed.content.decode()
    assert [key["id"] for key in listed.json()] == [created["id"]]
    assert "key" not in api.get(f"{KEYS}{created['id']}/").json()
    # And it works.
    assert bearer(text).get("/api/v1/devices/a-1/").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "read"}, "name"),
        ({"name": "k", "scope": "admin"}, "scope"),
        ({"name": "k", "scope": "read", "devices": ["a-1", "nope"]}, "devices"),
        # Another user's device is as unknown as one that does not exist.
        ({"name": "k", "scope": "read", "devices": ["b-1"]}, "devices"),
        ({"name": "k", "scope": "read", "devices": []}, "devices"),
        ({"name": "k", "scope": "read", "devices": "a-1"}, "devices"),
        ({"name": "k", "scope": "read", "devices": ["a\x00"]}, "devices"),
        ({"name": "k", "scope": "read", "expires": "2020-01-01T00:00:00Z"}, "expires"),
        ({"name": "k", "scope": "read", "expires": "soon"}, "expires"),
    ],
)
def test_bad_key_request_is_a_400_naming_the_field(alice, fleet, body, field):
    errors = field_errors(api_client(alice).post(KEYS, body, format="json"))
    assert field in errors, errors
    assert not ApiKey.objects.exists()


def test_unknown_devices_are_named_in_the_error(alice, fleet):
    body = {"name": "k", "scope": "read", "devices": ["a-1", "ghost", "b-1"]}
    errors = field_errors(api_client(alice).post(KEYS, body, format="json"))
    assert errors["devices"] == ["no such device: 'b-1', 'ghost'"]


def test_keys_per_user_and_devices_per_key_are_limited(alice, fleet, settings):
    settings.HUB = {**settings.HUB, "API_KEYS_PER_USER": 2, "API_KEY_MAX_DEVICES": 2}
    api = api_client(alice)
    body = {"name": "k", "scope": "read", "devices": ["a-1", "a-2", "a-3"]}
    assert (
        "HUB_API_KEY_MAX_DEVICES" in field_errors(api.post(KEYS, body, format="json"))["devices"][0]
    )
    for _ in range(2):
        assert api.post(KEYS, {"name": "k", "scope": "read"}, format="json").status_code == 201
    errors = field_errors(api.post(KEYS, {"name": "k", "scope": "read"}, format="json"))
    assert "HUB_API_KEYS_PER_USER" in errors["limit"][0]
    # A revoked key still counts until it is deleted.
    first = ApiKey.objects.filter(owner=alice).first()
    assert api.delete(f"{KEYS}{first.pk}/").status_code == 204
    assert api.post(KEYS, {"name": "k", "scope": "read"}, format="json").status_code == 400
    assert api.delete(f"{KEYS}{first.pk}/").status_code == 204
    assert api.post(KEYS, {"name": "k", "scope": "read"}, format="json").status_code == 201


def test_delete_revokes_then_deletes(alice, fleet):
    key, text = make_key(alice)
    api = api_client(alice)
    assert api.delete(f"{KEYS}{key.pk}/").status_code == 204
    shown = api.get(f"{KEYS}{key.pk}/").json()
    assert shown["state"] == "revoked" and shown["revoked_at"] is not None
    assert bearer(text).get("/api/v1/devices/").status_code == 401
    assert api.delete(f"{KEYS}{key.pk}/").status_code == 204
    assert api.get(f"{KEYS}{key.pk}/").status_code == 404
    assert not ApiKey.objects.exists()


def test_expired_key_is_listed_as_expired(alice):
    key, _ = make_key(alice, expires=timezone.now() + timedelta(days=1))
    ApiKey.objects.filter(pk=key.pk).update(expires=timezone.now() - timedelta(seconds=1))
    assert api_client(alice).get(KEYS).json()[0]["state"] == "expired"


def test_other_users_keys_are_404_and_unlisted(alice, fleet):
    bobs_key, _ = make_key(fleet["b-1"].owner)
    api = api_client(alice)
    assert api.get(KEYS).json() == []
    assert api.get(f"{KEYS}{bobs_key.pk}/").status_code == 404
    assert api.delete(f"{KEYS}{bobs_key.pk}/").status_code == 404
    assert api.get(f"{KEYS}x1/").status_code == 404
    assert ApiKey.objects.get(pk=bobs_key.pk).revoked_at is None


@pytest.mark.parametrize("scope", ["read", "write"])
def test_an_api_key_cannot_list_create_or_revoke_keys(alice, scope):
    key, text = make_key(alice, scope=scope)
    client = bearer(text)
    assert client.get(KEYS).status_code == 403
    assert client.get(f"{KEYS}{key.pk}/").status_code == 403
    response = client.post(KEYS, {"name": "k", "scope": "write"}, format="json")
    assert response.status_code == 403
    assert client.delete(f"{KEYS}{key.pk}/").status_code == 403
    assert ApiKey.objects.count() == 1
    assert ApiKey.objects.get().revoked_at is None


def test_keys_need_authentication(alice):
    assert bearer("").get(KEYS).status_code == 401
    from rest_framework.test import APIClient

    assert APIClient().get(KEYS).status_code == 401
