"""Provisioning keys over REST: create, list, revoke; claims with their own refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from devices.models import Device
from devices.services import device_authenticate
from provisioning.models import ProvisioningKey
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import api_client

pytestmark = pytest.mark.django_db


def key_of(api: APIClient, **fields: object) -> dict[str, object]:
    answer = api.post("/api/v1/provisioning-keys/", fields, format="json")
    assert answer.status_code == 201, answer.json()
    return dict(answer.json())


def claim(key: dict[str, object], uid: str, secret: str | None = None, **extra: object):
    body = {"key": key["key"], "secret": secret or key["secret"], "uid": uid, **extra}
    return APIClient().post("/api/v1/provision/", body, format="json")


def test_created_key_shows_its_secret_once_and_stores_it_hashed():
    api = api_client(make_user("alice"))
    key = key_of(api, name="line 2", max_devices=3, uid_prefix="line2-")
    assert key["key"].startswith("pk.") and len(key["secret"]) >= 40
    assert key["devices_claimed"] == 0 and key["revoked"] is False
    row = ProvisioningKey.objects.get(key=key["key"])
    assert key["secret"] not in row.secret_hash
    listed = api.get("/api/v1/provisioning-keys/").json()
    assert [item["key"] for item in listed] == [key["key"]]
    assert "secret" not in listed[0]


def test_claim_registers_a_device_of_the_keys_owner_with_a_working_token():
    alice = make_user("alice")
    key = key_of(api_client(alice), name="fleet")
    answer = claim(key, "boiler-7", name="Boiler 7")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["uid"] == "boiler-7"
    device = Device.objects.get(uid="boiler-7")
    assert device.owner == alice and device.name == "Boiler 7"
    assert device_authenticate(uid="boiler-7", token=body["token"]) == device
    assert api_client(alice).get("/api/v1/provisioning-keys/").json()[0]["devices_claimed"] == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("wrong_secret", "key_invalid"),
        ("unknown_key", "key_invalid"),
        ("revoked", "key_revoked"),
        ("expired", "key_expired"),
        ("exhausted", "key_exhausted"),
    ],
)
def test_refused_claims_are_403_each_with_its_own_code(change, code):
    api = api_client(make_user("alice"))
    key = key_of(api, max_devices=1)
    secret = None
    if change == "wrong_secret":
        secret = "not-the-secret"
    elif change == "unknown_key":
        key = {**key, "key": "pk.unknownunknownunknown0"}
    elif change == "revoked":
        assert api.delete(f"/api/v1/provisioning-keys/{key['id']}/").status_code == 204
    elif change == "expired":
        ProvisioningKey.objects.filter(key=key["key"]).update(
            expires=timezone.now() - timedelta(seconds=1)
        )
    elif change == "exhausted":
        assert claim(key, "first").status_code == 201
    answer = claim(key, "wanted", secret)
    assert answer.status_code == 403, answer.json()
    assert answer.json()["error"] == code
    assert not Device.objects.filter(uid="wanted").exists()


def test_taken_uid_is_409_and_spends_nothing():
    alice = make_user("alice")
    make_device(alice, "taken")
    key = key_of(api_client(alice), max_devices=1)
    answer = claim(key, "taken")
    assert answer.status_code == 409
    assert answer.json()["error"] == "uid_taken"
    assert claim(key, "free").status_code == 201


@pytest.mark.parametrize(
    ("uid", "code"), [("bad uid", "uid_invalid"), ("-x", "uid_invalid"), ("other-1", "uid_prefix")]
)
def test_bad_uid_or_one_outside_the_prefix_is_400_naming_uid(uid, code):
    key = key_of(api_client(make_user("alice")), uid_prefix="line2-")
    answer = claim(key, uid)
    assert answer.status_code == 400
    assert answer.json()["error"] == code and "uid" in answer.json()


def test_claim_body_fields_are_checked_first():
    answer = APIClient().post("/api/v1/provision/", {"key": 5, "uid": "x"}, format="json")
    assert answer.status_code == 400
    assert set(answer.json()) >= {"key", "secret"}


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"max_devices": 0}, "max_devices"),
        ({"uid_prefix": "bad prefix"}, "uid_prefix"),
        ({"expires": "2001-01-01T00:00:00Z"}, "expires"),
        ({"expires": "soon"}, "expires"),
        ({"name": 5}, "name"),
    ],
)
def test_bad_key_fields_are_400_naming_them(fields, name):
    answer = api_client(make_user("alice")).post(
        "/api/v1/provisioning-keys/", fields, format="json"
    )
    assert answer.status_code == 400
    assert name in answer.json()


def test_keys_per_user_are_capped_and_revoked_ones_do_not_count(settings):
    settings.HUB = {**settings.HUB, "PROVISIONING_KEYS_PER_USER": 2}
    api = api_client(make_user("alice"))
    first = key_of(api)
    key_of(api)
    answer = api.post("/api/v1/provisioning-keys/", {}, format="json")
    assert answer.status_code == 400
    assert "HUB_PROVISIONING_KEYS_PER_USER" in answer.json()["limit"][0]
    api.delete(f"/api/v1/provisioning-keys/{first['id']}/")
    key_of(api)


def test_others_keys_are_404():
    key = key_of(api_client(make_user("alice")))
    bob = api_client(make_user("bob"))
    assert bob.get(f"/api/v1/provisioning-keys/{key['id']}/").status_code == 404
    assert bob.delete(f"/api/v1/provisioning-keys/{key['id']}/").status_code == 404
    assert bob.delete("/api/v1/provisioning-keys/x%00/").status_code == 404
    # Digits to str.isdigit() that int() refuses (superscript three): 404, not 500.
    assert bob.delete("/api/v1/provisioning-keys/%C2%B3/").status_code == 404
    assert bob.get("/api/v1/provisioning-keys/%C2%B3/").status_code == 404
    assert not ProvisioningKey.objects.get(key=key["key"]).revoked_at


def test_claims_are_throttled_per_client_address_wrong_secret_or_not(monkeypatch):
    cache.clear()
    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "provision", "3/min")
    key = key_of(api_client(make_user("alice")))
    statuses = [claim(key, f"d{n}", "wrong").status_code for n in range(3)]
    assert statuses == [403] * 3
    throttled = claim(key, "d9")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    # Another address has its own budget (the peer, no trusted proxy: X-Forwarded-For ignored).
    other = APIClient(REMOTE_ADDR="10.0.0.9").post(
        "/api/v1/provision/",
        {"key": key["key"], "secret": key["secret"], "uid": "d9"},
        format="json",
        HTTP_X_FORWARDED_FOR="10.0.0.1",
    )
    assert other.status_code == 201
    cache.clear()


@override_settings()
def test_cli_creates_a_key_and_prints_its_secret(capsys):
    from django.core.management import call_command

    make_user("carol")
    call_command(
        "provisioning-key",
        "create",
        "--owner",
        "carol",
        "--max-devices",
        "2",
        "--uid-prefix",
        "c-",
        "--expires",
        "2099-01-01T00:00:00Z",
        "--name",
        "cli",
    )
    import json

    printed = json.loads(capsys.readouterr().out)
    row = ProvisioningKey.objects.get(key=printed["key"])
    assert (row.max_devices, row.uid_prefix, row.name) == (2, "c-", "cli")
    assert claim({"key": printed["key"], "secret": printed["secret"]}, "c-1").status_code == 201
