"""The hub's own 404 and 500 pages (DEBUG off) and its icon, /favicon.ico included."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory
from django.views.defaults import server_error

from tests.factories import make_device, make_user

pytestmark = pytest.mark.django_db

ICON = "/static/telemetry/favicon.svg"


def test_an_unknown_address_gets_the_hubs_404_page(client: Client, settings) -> None:
    settings.DEBUG = False
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Not found" in page and "/no/such/page/" in page
    assert "telemetry/hub.css" in page and ICON in page
    assert "The requested resource was not found on this server" not in page  # Django's bare one


def test_another_users_device_page_is_the_same_404_for_a_signed_in_user(
    client: Client, settings
) -> None:
    settings.DEBUG = False
    make_device(make_user("bob"), "bobs-boiler")
    client.force_login(make_user("alice"))
    response = client.get("/devices/bobs-boiler/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Not found" in page and 'href="/"' in page and "alice" in page  # the hub's header


def test_the_500_page_renders_without_a_request_context_or_database(settings) -> None:
    settings.DEBUG = False
    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    page = response.content.decode()
    assert "Server error" in page and "telemetry/hub.css" in page and ICON in page


def test_pages_link_the_icon_and_favicon_ico_leads_to_it(client: Client) -> None:
    login = client.get("/accounts/login/")
    assert f'rel="icon" href="{ICON}"' in login.content.decode()
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == ICON
    icon = client.get(ICON)
    try:
        assert icon.status_code == 200
        assert icon["Content-Type"].startswith("image/svg+xml")
        assert b"<svg" in b"".join(icon.streaming_content)  # type: ignore[attr-defined]
    finally:
        icon.close()
