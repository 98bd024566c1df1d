"""The dashboard pages as the server renders them: login, own devices only, the data scripts use."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.staticfiles import finders
from django.utils import timezone

from devices.models import Command
from devices.services import command_create
from telemetry.pages import RECENT_COMMANDS
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import T0, store

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return make_user("alice")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def page_data(response) -> dict:
    """Return the JSON a page embeds for its script."""
    match = re.search(
        rb'<script id="page-data" type="application/json">(.*?)</script>', response.content
    )
    assert match, "the page embeds no page-data"
    return json.loads(match[1])


@pytest.mark.parametrize("path", ["/", "/devices/d1/"])
def test_pages_send_anonymous_visitors_to_log_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_login_page_renders_styled_form(client):
    response = client.get("/accounts/login/?next=/")
    assert response.status_code == 200
    assert b'name="username"' in response.content and b"telemetry/hub.css" in response.content


def test_fleet_embeds_own_devices_with_latest_values_in_their_sent_types(alice_client, alice):
    make_device(alice, "d1")
    make_device(alice, "quiet")
    make_device(make_user("bob"), "bobs")
    store([("d1", "temperature", T0, 21.5), ("d1", "door", T0, False), ("d1", "fw", T0, "1.2")])
    response = alice_client.get("/")
    assert response.status_code == 200
    data = page_data(response)
    assert [device["uid"] for device in data["devices"]] == ["d1", "quiet"]
    latest = data["devices"][0]["latest"]
    assert latest["temperature"]["value"] == 21.5
    assert latest["door"]["value"] is False
    assert latest["fw"]["value"] == "1.2"
    assert data["devices"][1]["latest"] == {}
    assert isinstance(data["server_now"], int)
    assert b"uplot/uPlot.iife.min.js" in response.content


def test_device_page_embeds_the_device_and_its_latest_values(alice_client, alice):
    make_device(alice, "d1")
    store([("d1", "temperature", T0, 21.5)])
    response = alice_client.get("/devices/d1/")
    assert response.status_code == 200
    data = page_data(response)
    assert data["device"]["uid"] == "d1"
    assert data["device"]["latest"]["temperature"]["value"] == 21.5
    assert b'id="history-chart"' in response.content


def test_device_page_embeds_recent_commands_newest_first_and_a_csrf_token(alice_client, alice):
    device, _ = make_device(alice, "d1")
    other, _ = make_device(alice, "d2")
    start = timezone.now()
    for step in range(RECENT_COMMANDS + 2):
        command = command_create(device=device, method=f"m{step}", params={"n": step})
        Command.objects.filter(id=command.id).update(created=start + timedelta(seconds=step))
    command_create(device=other, method="elsewhere", params={})
    response = alice_client.get("/devices/d1/")
    data = page_data(response)
    methods = [command["method"] for command in data["commands"]]
    assert methods == [f"m{step}" for step in range(RECENT_COMMANDS + 1, 1, -1)]
    assert data["commands"][0]["params"] == {"n": RECENT_COMMANDS + 1}
    assert data["commands"][0]["status"] == "pending"
    assert data["command_timeout"] == {"default": 30, "max": 3600}
    # The form's token is what DRF's SessionAuthentication checks on the script's POST.
    assert b'id="command-form"' in response.content
    assert b'name="csrfmiddlewaretoken"' in response.content


@pytest.mark.parametrize("uid", ["bobs", "nobody", "bad%20uid"])
def test_device_page_is_404_for_others_and_unknown_devices(alice_client, uid):
    make_device(make_user("bob"), "bobs")
    assert alice_client.get(f"/devices/{uid}/").status_code == 404


def test_charting_library_is_installed_and_found_by_staticfiles():
    # `make` runs `npm ci` (scripts/assets.sh); without it the charts cannot load.
    for name in ("uplot/uPlot.iife.min.js", "uplot/uPlot.min.css"):
        assert finders.find(name), f"{name} not found: run scripts/assets.sh (npm ci)"
