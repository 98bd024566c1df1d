"""A read key is refused every unsafe method on every path of the OpenAPI document; GETs work."""

from __future__ import annotations

import pytest

from apikeys.auth import READ_ONLY_MESSAGE
from tests.apikeys.conftest import bearer, make_key
from tests.apikeys.surface import UNSAFE, fill, schema_operations, snapshot, world

pytestmark = pytest.mark.django_db

BODIES = {
    "post": {"method": "reboot", "params": {}, "uid": "new-1", "name": "x", "url": "http://x/"},
    "put": {"name": "x"},
    "patch": {"name": "renamed", "active": False, "enabled": False, "threshold": 99},
}

# Endpoints that take no credentials at all (a device claiming its own with a provisioning
# key's secret in the body): a key sent to them is not used, so it cannot widen anything.
ANONYMOUS = {"/api/v1/provision/"}
# Endpoints taken with a device's own uid:token only (HTTP ingest): an API key is 401 there.
DEVICE_CREDENTIALS = {"/api/v1/devices/{uid}/telemetry/"}

# Query parameters a GET needs.
QUERIES = {"/api/v1/devices/{uid}/series/": "?metric=t"}


def test_read_key_gets_403_on_every_unsafe_method_of_every_path(alice, fleet):
    key, text = make_key(alice, scope="read")
    objects = world(alice, key)
    operations = schema_operations()
    assert len(operations) >= 20, sorted(operations)
    client = bearer(text)
    before = snapshot()
    tried = 0
    anonymous = sorted(path for path in operations if path in ANONYMOUS)
    assert anonymous == sorted(ANONYMOUS)
    for path in anonymous:
        response = client.post(path, {}, format="json")
        assert response.status_code == 400, response.content  # a claim without its fields
        del operations[path]
    for path in sorted(DEVICE_CREDENTIALS):
        response = client.post(fill(path, objects.params), {}, format="json")
        assert response.status_code == 401, response.content
        del operations[path]
    for path, _documented in sorted(operations.items()):
        url = fill(path, objects.params)
        # Every unsafe method, documented or not: an undocumented one must not slip through.
        for method in UNSAFE:
            response = getattr(client, method)(url, BODIES.get(method, {}), format="json")
            assert response.status_code == 403, (method, url, response.content[:300])
            assert response.json() == {"detail": READ_ONLY_MESSAGE}, (method, url)
            tried += 1
    assert tried == 4 * len(operations)
    assert snapshot() == before


def test_read_key_reads_every_documented_get(alice, fleet):
    key, text = make_key(alice, scope="read")
    objects = world(alice, key)
    client = bearer(text)
    for path, methods in sorted(schema_operations().items()):
        if "get" not in methods:
            continue
        response = client.get(fill(path, objects.params) + QUERIES.get(path, ""))
        if path.startswith(("/api/v1/api-keys/", "/api/v1/provisioning-keys/")):
            assert response.status_code == 403, path  # keys are managed by their owner only
        else:
            assert response.status_code == 200, (path, response.content[:300])


def test_write_key_is_not_refused_by_scope(alice, fleet):
    _, text = make_key(alice, scope="write")
    client = bearer(text)
    response = client.patch("/api/v1/devices/a-1/", {"name": "renamed"}, format="json")
    assert response.status_code == 200, response.content
    response = client.post(
        "/api/v1/devices/a-1/commands/", {"method": "reboot", "params": {}}, format="json"
    )
    assert response.status_code == 201, response.content
    assert client.delete("/api/v1/devices/a-2/").status_code == 204
    # Options and HEAD are safe methods: a read key may use them.
    _, read = make_key(alice, scope="read")
    assert bearer(read).options("/api/v1/devices/").status_code == 200
    assert bearer(read).head("/api/v1/devices/a-1/").status_code == 200
