"""Hostile REST bodies and command payloads: a 400 naming the problem, never a 500."""

from __future__ import annotations

import pytest

from devices.models import Command
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import api_client

pytestmark = pytest.mark.django_db

DEEP = b"[" * 10_000 + b"]" * 10_000


@pytest.fixture
def api():
    alice = make_user("alice")
    make_device(alice, "d1")
    return api_client(alice)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/devices/", DEEP, "detail"),
        ("/api/v1/devices/", b'{"uid": "x", "name": "\\ud800"}', "detail"),
        ("/api/v1/devices/", b'{"uid": "x", "name": "a\\u0000"}', "name"),
        ("/api/v1/devices/", b'{"uid": "x", "uid": 1e999}', "detail"),
        ("/api/v1/devices/d1/commands/", DEEP, "detail"),
        (
            "/api/v1/devices/d1/commands/",
            b'{"method": "m", "params": ' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}",
            "detail",
        ),
        ("/api/v1/devices/d1/commands/", b'{"method": "m", "params": {"a": "\\u0000"}}', "params"),
        ("/api/v1/devices/d1/commands/", b'{"method": "m", "params": {"k\\u0000": 1}}', "params"),
        (
            "/api/v1/devices/d1/commands/",
            b'{"method": "m", "params": {"a": ["\\ud800"]}}',
            "detail",
        ),
        (
            "/api/v1/devices/d1/commands/",
            b'{"method": "m", "params": {"a": "' + b"x" * 70_000 + b'"}}',
            "params",
        ),
        ("/api/v1/devices/d1/commands/", b'{"method": "a\\u0000b"}', "method"),
        ("/api/v1/auth/token/", DEEP, "detail"),
        ("/api/v1/auth/token/", b'{"username": "a\\u0000", "password": "x"}', "username"),
    ],
)
def test_hostile_bodies_are_a_400_naming_the_problem(api, path, body, field):
    response = api.generic("POST", path, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()
    assert not Command.objects.exists()


def test_a_nested_patch_is_a_400(api):
    response = api.generic("PATCH", "/api/v1/devices/d1/", DEEP, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/commands/%00/",
        "/api/v1/commands/a%00b/",
        "/api/v1/commands/" + "a" * 500 + "/",
        "/api/v1/devices/%00/",
        "/api/v1/devices/d1%00/commands/",
        "/api/v1/devices/d1%00/presence/",
    ],
)
def test_junk_ids_in_paths_are_404(api, path):
    assert api.get(path).status_code == 404
