"""The /api-keys/ page and the admin: list, create (shown once), revoke; no inline script."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apikeys.models import ApiKey
from apikeys.services import KEY_PATTERN
from tests.apikeys.conftest import bearer, make_key
from tests.factories import make_user

pytestmark = pytest.mark.django_db

PAGE = "/api-keys/"


@pytest.fixture
def browser(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_page_needs_login():
    response = Client().get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_created_key_is_shown_once_then_listed_without_it(browser, fleet):
    response = browser.post(
        PAGE, {"name": "grafana", "scope": "read", "devices": "a-1, a-2", "expires": ""}
    )
    assert response.status_code == 200
    shown = re.search(rb'<code id="new-key" class="key-text">(hub_[^<]+)</code>', response.content)
    assert shown, response.content[:2000]
    text = shown.group(1).decode()
    key = ApiKey.objects.get()
    assert (key.name, key.scope, sorted(d.uid for d in key.devices.all())) == (
        "grafana",
        "read",
        ["a-1", "a-2"],
    )
    assert bearer(text).get("/api/v1/devices/a-1/").status_code == 200
    again = browser.get(PAGE)
    assert text.encode() not in again.content
    assert text.split("_")[1].encode() in again.content  # the prefix tells keys apart
    assert b"grafana" in again.content and b"a-1, a-2" in again.content
    # The key's use shows on the page.
    assert b'<td class="last-used">never</td>' not in again.content


def test_expiry_is_read_as_utc_and_bad_input_is_a_400_naming_the_field(browser, fleet):
    response = browser.post(PAGE, {"name": "k", "scope": "write", "expires": "2999-01-02T03:04"})
    assert response.status_code == 200
    assert ApiKey.objects.get().expires.isoformat() == "2999-01-02T03:04:00+00:00"
    for form, field in (
        ({"name": "", "scope": "read"}, "name"),
        ({"name": "k", "scope": "read", "devices": "ghost"}, "devices"),
        ({"name": "k", "scope": "read", "expires": "2001-01-01T00:00"}, "expires"),
        ({"name": "k", "scope": "root"}, "scope"),
    ):
        response = browser.post(PAGE, form)
        assert response.status_code == 400
        assert f'data-field="{field}"'.encode() in response.content, form
    assert ApiKey.objects.count() == 1


def test_revoke_then_delete_from_the_page(browser, alice):
    key, text = make_key(alice)
    action = f"/api-keys/{key.pk}/revoke/"
    assert action.encode() in browser.get(PAGE).content
    assert browser.post(action).status_code == 302
    assert ApiKey.objects.get().revoked_at is not None
    assert bearer(text).get("/api/v1/devices/").status_code == 401
    assert b"revoked" in browser.get(PAGE).content
    assert browser.post(action).status_code == 302
    assert not ApiKey.objects.exists()
    assert browser.get(action).status_code == 405


def test_page_shows_only_own_keys_and_cannot_revoke_others(browser, alice):
    bob = make_user("bob")
    bobs, _ = make_key(bob, name="bobs-secret-key")
    assert b"bobs-secret-key" not in browser.get(PAGE).content
    assert browser.post(f"/api-keys/{bobs.pk}/revoke/").status_code == 302
    assert ApiKey.objects.get().revoked_at is None


def test_page_has_no_inline_script_and_the_csp_forbids_it(browser, alice):
    make_key(alice)
    response = browser.get(PAGE)
    assert b"<script" not in response.content
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_admin_lists_keys_and_revokes_them_without_showing_secrets():
    staff = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    key, text = make_key(staff, name="ops")
    client = Client()
    client.force_login(staff)
    listing = client.get("/admin/apikeys/apikey/")
    assert listing.status_code == 200 and b"ops" in listing.content
    change = client.get(f"/admin/apikeys/apikey/{key.pk}/change/")
    assert change.status_code == 200
    # The secret may itself hold "_": take it whole, by the key's own pattern.
    secret = KEY_PATTERN.fullmatch(text).group(2)
    assert secret.encode() not in change.content
    assert key.secret_hash.encode() not in change.content
    assert client.get("/admin/apikeys/apikey/add/").status_code == 403
    response = client.post(
        "/admin/apikeys/apikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    assert response.status_code == 302
    assert ApiKey.objects.get().revoked_at is not None
