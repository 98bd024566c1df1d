"""A key limited to devices sees only those: others are 404 on every path, lists are filtered."""

from __future__ import annotations

import pytest

from alarms.models import AlarmRule
from devices.access import LIMITED_KEY_MESSAGE
from devices.models import Device
from tests.alarms.conftest import make_rule
from tests.apikeys.conftest import bearer, make_key
from tests.apikeys.surface import UNSAFE, fill, schema_operations, snapshot, world
from tests.telemetry.conftest_api import field_errors, response_json

pytestmark = pytest.mark.django_db

QUERIES = {"/api/v1/devices/{uid}/series/": "?metric=t"}
# Account-wide, not one device's: refused (403) to a limited key whatever the id.
ACCOUNT_WIDE = ("/api/v1/webhooks/", "/api/v1/api-keys/", "/api/v1/provisioning-keys/")
# Taken with a device's own uid:token only (HTTP ingest): no API key opens it, shown or not.
DEVICE_CREDENTIALS = ("/api/v1/devices/{uid}/telemetry/",)


def limited(alice, scope="read"):
    return make_key(alice, scope=scope, devices=[Device.objects.get(uid="a-1")])


@pytest.mark.parametrize("scope", ["read", "write"])
def test_every_path_of_a_hidden_device_is_404(alice, fleet, scope):
    key, text = limited(alice, scope)
    objects = world(alice, key)
    client = bearer(text)
    before = snapshot()
    checked = 0
    for path, methods in sorted(schema_operations().items()):
        if "{" not in path:
            continue
        hidden = fill(path, objects.hidden)
        shown = fill(path, objects.params)
        wanted = 403 if path.startswith(ACCOUNT_WIDE) else 404
        if path in DEVICE_CREDENTIALS:
            for uid_path in (hidden, shown):
                assert client.post(uid_path, {}, format="json").status_code == 401, uid_path
            continue
        if "get" in methods:
            response = client.get(hidden + QUERIES.get(path, ""))
            assert response.status_code == wanted, (hidden, response.content[:300])
            if wanted == 404:
                assert client.get(shown + QUERIES.get(path, "")).status_code == 200, shown
            checked += 1
        if scope == "write":
            for method in sorted(methods & set(UNSAFE)):
                response = getattr(client, method)(hidden, {"method": "x"}, format="json")
                assert response.status_code == wanted, (method, hidden, response.content[:300])
                checked += 1
    assert checked >= 10
    assert snapshot() == before


def test_lists_show_only_the_keys_devices(alice, fleet):
    key, text = limited(alice)
    world(alice, key)
    make_rule(alice, None, condition="above", threshold=1, name="fleet-wide")
    client = bearer(text)
    assert [d["uid"] for d in response_json(client.get("/api/v1/devices/"))] == ["a-1"]
    assert set(response_json(client.get("/api/v1/latest/"))) == {"a-1"}
    latest = client.get("/api/v1/latest/", {"devices": "a-3,a-1,b-1"})
    assert set(response_json(latest)) == {"a-1"}
    assert response_json(client.get("/api/v1/latest/", {"devices": "a-3"})) == {}
    alarms = client.get("/api/v1/alarms/").json()["results"]
    assert alarms and {alarm["device"] for alarm in alarms} == {"a-1"}
    assert client.get("/api/v1/alarms/", {"device": "a-3"}).json()["results"] == []
    rules = client.get("/api/v1/alarm-rules/").json()
    assert [rule["device"] for rule in rules] == ["a-1"]
    # The owner sees everything.
    owner = bearer(make_key(alice)[1])
    assert len(response_json(owner.get("/api/v1/devices/"))) == 3
    assert len(owner.get("/api/v1/alarm-rules/").json()) == 3


def test_limited_key_cannot_register_devices_or_touch_webhooks_or_watch_the_fleet(alice, fleet):
    _, text = limited(alice, "write")
    client = bearer(text)
    response = client.post("/api/v1/devices/", {"uid": "new-1"}, format="json")
    assert response.status_code == 403 and response.json() == {"detail": LIMITED_KEY_MESSAGE}
    assert client.get("/api/v1/webhooks/").status_code == 403
    body = {"name": "r", "metric": "t", "condition": "above", "threshold": 1, "severity": "minor"}
    errors = field_errors(
        client.post("/api/v1/alarm-rules/", {**body, "device": None}, format="json")
    )
    assert "device" in errors
    assert "device" in field_errors(
        client.post("/api/v1/alarm-rules/", {**body, "device": "a-3"}, format="json")
    )
    response = client.post("/api/v1/alarm-rules/", {**body, "device": "a-1"}, format="json")
    assert response.status_code == 201, response.content
    assert not Device.objects.filter(uid="new-1").exists()
    assert AlarmRule.objects.count() == 1


def test_deleted_device_leaves_the_key_limited_to_nothing(alice, fleet):
    _, text = limited(alice)
    Device.objects.get(uid="a-1").delete()
    client = bearer(text)
    assert response_json(client.get("/api/v1/devices/")) == []
    assert response_json(client.get("/api/v1/latest/")) == {}
