"""Which endpoints answer without login, how an operator closes them, and the CSP header."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import api_client

pytestmark = pytest.mark.django_db

POLICY = "Content-Security-Policy"


@pytest.fixture
def closed(settings):
    def close(**names: bool) -> None:
        settings.HUB = {**settings.HUB, **names}

    return close


def staff():
    user = make_user("ops")
    user.is_staff = True
    user.save()
    return user


@pytest.mark.parametrize("path", ["/metrics", "/api/schema/", "/api/docs/", "/healthz"])
def test_endpoints_are_public_by_default(path):
    response = APIClient().get(path)
    assert response.status_code == 200, response.content[:300]


def test_closed_metrics_refuse_anonymous_and_non_staff_and_serve_staff_tokens(closed):
    closed(PUBLIC_METRICS=False)
    assert APIClient().get("/metrics").status_code == 401
    assert api_client(make_user("alice")).get("/metrics").status_code == 403
    response = api_client(staff()).get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"hub_http_requests_total" in response.content


def test_closed_metrics_serve_a_staff_session(closed, client):
    closed(PUBLIC_METRICS=False)
    client.force_login(staff())
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/", "/api/docs/?script="])
def test_closed_schema_and_docs_are_for_signed_in_users(closed, client, path):
    closed(PUBLIC_SCHEMA=False)
    assert APIClient().get(path).status_code == 401
    assert api_client(make_user("alice")).get(path).status_code == 200
    client.force_login(make_user("bob"))
    assert client.get(path).status_code == 200


def test_closing_the_schema_leaves_metrics_open_and_the_reverse(closed):
    closed(PUBLIC_SCHEMA=False)
    assert APIClient().get("/metrics").status_code == 200
    closed(PUBLIC_SCHEMA=True, PUBLIC_METRICS=False)
    assert APIClient().get("/api/schema/").status_code == 200


@pytest.mark.parametrize(
    "path", ["/", "/devices/d1/", "/accounts/login/", "/admin/", "/api/docs/", "/api/v1/devices/"]
)
def test_pages_carry_a_policy_without_inline_script_or_style(client, path):
    owner = make_user("alice")
    owner.is_staff = True
    owner.save()
    make_device(owner, "d1")
    client.force_login(owner)
    response = client.get(path)
    assert response.status_code == 200
    policy = dict(
        part.strip().split(" ", 1) for part in response[POLICY].split(";") if part.strip()
    )
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["default-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    # The device list streams its JSON (any number of devices in constant memory).
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"<script>" not in body and b"<style>" not in body
    assert b" onclick=" not in body and b" onload=" not in body
