"""Bearer API keys on REST: accepted, refused when revoked or expired, last use noted sparingly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apikeys import services
from apikeys.models import ApiKey
from apikeys.services import api_key_revoke
from tests.apikeys.conftest import bearer, make_key
from tests.telemetry.conftest_api import api_client

pytestmark = pytest.mark.django_db


def test_key_authenticates_as_its_owner_beside_the_user_token(alice, fleet):
    _, text = make_key(alice)
    assert [d["uid"] for d in _json(bearer(text).get("/api/v1/devices/"))] == ["a-1", "a-2", "a-3"]
    # The user's own token scheme works as before.
    assert api_client(alice).get("/api/v1/devices/a-1/").status_code == 200


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Bearer hub_0000000000000000_" + "A" * 43, "Invalid API key."),
        ("Bearer not-a-key", "Invalid API key."),
        ("Bearer hub_\x00", "Invalid API key."),
        ("Bearer", "Invalid Bearer header: give one API key."),
        ("Bearer a b", "Invalid Bearer header: give one API key."),
    ],
)
def test_wrong_keys_are_401_naming_the_problem(alice, header, detail):
    make_key(alice)
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/devices/")
    assert response.status_code == 401
    assert response.json() == {"detail": detail}


def test_a_right_prefix_with_a_wrong_secret_is_refused(alice):
    _, text = make_key(alice)
    forged = text[:-1] + ("A" if text[-1] != "A" else "B")
    response = bearer(forged).get("/api/v1/devices/")
    assert response.status_code == 401 and response.json() == {"detail": "Invalid API key."}


def test_revoked_key_is_401_saying_revoked(alice, fleet):
    key, text = make_key(alice, scope="write")
    assert bearer(text).get("/api/v1/devices/").status_code == 200
    api_key_revoke(key=key)
    for response in (
        bearer(text).get("/api/v1/devices/"),
        bearer(text).post("/api/v1/devices/a-1/commands/", {"method": "x"}, format="json"),
    ):
        assert response.status_code == 401
        assert response.json() == {"detail": "API key revoked."}


def test_expired_key_is_401_saying_expired(alice, fleet):
    key, text = make_key(alice, expires=timezone.now() + timedelta(hours=1))
    assert bearer(text).get("/api/v1/devices/").status_code == 200
    ApiKey.objects.filter(pk=key.pk).update(expires=timezone.now() - timedelta(seconds=1))
    response = bearer(text).get("/api/v1/devices/")
    assert response.status_code == 401
    assert response.json() == {"detail": "API key expired."}


def test_inactive_owner_key_is_refused(alice):
    _, text = make_key(alice)
    alice.is_active = False
    alice.save()
    assert bearer(text).get("/api/v1/devices/").status_code == 401


def test_last_use_is_written_at_most_once_a_minute_and_listed(alice, fleet):
    key, text = make_key(alice)
    client = bearer(text)
    assert client.get("/api/v1/devices/a-1/").status_code == 200
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/devices/a-1/").status_code == 200
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    # A minute later it is written again.
    earlier = first - timedelta(seconds=services.TOUCH_SECONDS + 1)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=earlier)
    assert client.get("/api/v1/devices/a-1/").status_code == 200
    later = ApiKey.objects.get(pk=key.pk).last_used_at
    assert later > earlier
    listed = api_client(alice).get("/api/v1/api-keys/").json()[0]
    assert listed["last_used_at"] == later.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(response):
    from tests.telemetry.conftest_api import response_json

    assert response.status_code == 200, response.content
    return response_json(response)
