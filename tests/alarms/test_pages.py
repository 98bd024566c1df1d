"""The alarm parts of the pages as the server renders them: /alarms/, the fleet, the device page,
the header badge; own data only, bounded whatever the data, no inline script or style."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alarms.models import Alarm
from alarms.pages import PAGE_SIZE, RULES_SHOWN
from telemetry.pages import DEVICE_ACTIVE_ALARMS, DEVICE_CLEARED_ALARMS, DEVICE_RULES, FLEET_ALARMS
from tests.alarms.conftest import make_rule
from tests.factories import make_device, make_user

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 1, tzinfo=UTC)


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


def badge(response) -> dict[str, Any]:
    """Return the header badge's count, text, severity and whether it is hidden."""
    match = re.search(rb'<span id="alarm-badge"([^>]*)>([^<]*)</span>', response.content)
    assert match, "the page has no alarm badge"
    attributes = match[1].decode()
    count = re.search(r'data-count="(\d+)"', attributes)
    severity = re.search(r'data-severity="(\w*)"', attributes)
    return {
        "count": int(count[1]) if count else None,
        "text": match[2].decode(),
        "severity": severity[1] if severity else None,
        "hidden": " hidden" in attributes,
    }


def raise_alarm(rule, device, *, minutes: int = 0, **fields: Any) -> Alarm:
    """Store an alarm as evaluation would, `minutes` after START."""
    fields.setdefault("severity", rule.severity)
    return Alarm.objects.create(
        rule=rule,
        device=device,
        owner=rule.owner,
        name=rule.name,
        metric=rule.metric,
        started=START + timedelta(minutes=minutes),
        value=31.5,
        peak=33.0,
        **fields,
    )


def many_rules(owner, count: int, device=None) -> list:
    return [
        make_rule(owner, device, name=f"r{n}", condition="above", threshold=n) for n in range(count)
    ]


@pytest.mark.parametrize("path", ["/alarms/", "/alarms/?state=all"])
def test_alarms_page_sends_anonymous_visitors_to_log_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/alarms/")


def test_alarms_page_lists_own_active_alarms_newest_first_by_default(alice_client, alice):
    device, _ = make_device(alice, "d1")
    rule = make_rule(alice, condition="above", threshold=30, name="Too hot", severity="critical")
    older = raise_alarm(rule, device, minutes=1)
    newer = raise_alarm(make_rule(alice, condition="below", threshold=0), device, minutes=2)
    raise_alarm(
        make_rule(alice, condition="below", threshold=-5), device, minutes=3, state="cleared"
    )
    bob = make_user("bob")
    bobs_device, _ = make_device(bob, "bobs")
    raise_alarm(make_rule(bob, condition="above", threshold=1), bobs_device, minutes=4)

    response = alice_client.get("/alarms/")
    assert response.status_code == 200
    data = page_data(response)
    assert [alarm["id"] for alarm in data["alarms"]] == [newer.id, older.id]
    first = data["alarms"][1]
    # REST's shape: the page's script reads both alike.
    assert first["name"] == "Too hot" and first["device"] == "d1" and first["value"] == 31.5
    assert first["severity"] == "critical" and first["state"] == "active"
    assert first["started"] == "2026-01-01T00:01:00.000Z"
    assert data["filters"] == {"state": "active"} and data["first_page"] is True
    assert b'aria-current="page">Active</a>' in response.content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=cleared", ["cleared"]),
        ("state=all", ["acked", "cleared", "minor", "other-device", "critical"]),
        ("severity=minor", ["minor"]),
        ("acknowledged=yes", ["acked"]),
        ("acknowledged=no&severity=critical", ["critical"]),
        ("device=d2", ["other-device"]),
        ("state=all&device=d1&acknowledged=no", ["cleared", "minor", "critical"]),
    ],
)
def test_alarms_page_filters_by_state_severity_acknowledgement_and_device(
    alice_client, alice, query, expected
):
    d1, _ = make_device(alice, "d1")
    d2, _ = make_device(alice, "d2")
    names = ["critical", "other-device", "minor", "cleared", "acked"]
    rules = {name: make_rule(alice, name=name, condition="above", threshold=1) for name in names}
    raise_alarm(rules["critical"], d1, minutes=1, severity="critical")
    raise_alarm(rules["other-device"], d2, minutes=2)
    raise_alarm(rules["minor"], d1, minutes=3, severity="minor")
    raise_alarm(rules["cleared"], d1, minutes=4, state="cleared")
    raise_alarm(rules["acked"], d1, minutes=5, acknowledged=True)

    data = page_data(alice_client.get(f"/alarms/?{query}"))
    assert [alarm["name"] for alarm in data["alarms"]] == expected


def test_alarms_page_pages_older_alarms_by_keyset_without_overlap(alice_client, alice):
    device, _ = make_device(alice, "d1")
    rules = many_rules(alice, PAGE_SIZE + 5)
    # Two alarms share each start: the keyset breaks ties by id, as REST's order does.
    alarms = [raise_alarm(rule, device, minutes=n // 2) for n, rule in enumerate(rules)]
    newest_first = sorted(alarms, key=lambda alarm: (alarm.started, alarm.id), reverse=True)

    first = alice_client.get("/alarms/")
    data = page_data(first)
    assert [alarm["id"] for alarm in data["alarms"]] == [a.id for a in newest_first[:PAGE_SIZE]]
    older = re.search(rb'id="alarms-older" href="([^"]+)"', first.content)
    assert older, "the first page links to older alarms"
    link = older[1].decode().replace("&amp;", "&")
    assert f"before={newest_first[PAGE_SIZE - 1].id}" in link

    second = alice_client.get(f"/alarms/{link}")
    data = page_data(second)
    assert [alarm["id"] for alarm in data["alarms"]] == [a.id for a in newest_first[PAGE_SIZE:]]
    assert data["first_page"] is False
    assert b'<a id="alarms-older" href="" hidden>' in second.content
    assert b"&larr; Newest" in second.content or "← Newest".encode() in second.content


@pytest.mark.parametrize(
    "query",
    [
        "severity=dreadful",
        "state=sideways",
        "before=abc",
        "before=-3",
        "before=99999999999999999999999",
        "device=not%20a%20uid",
        "device=%00",
        "acknowledged=maybe",
    ],
)
def test_alarms_page_answers_a_bad_filter_with_a_message_not_a_500(alice_client, alice, query):
    device, _ = make_device(alice, "d1")
    raise_alarm(make_rule(alice, condition="above", threshold=1), device)
    response = alice_client.get(f"/alarms/?{query}")
    assert response.status_code == 200
    name = query.split("=")[0]
    assert f"Ignored {name}=".encode() in response.content
    # The other filters still apply, with their defaults.
    assert len(page_data(response)["alarms"]) == 1


def test_alarms_page_from_someone_elses_alarm_is_the_first_page_with_a_message(alice_client, alice):
    device, _ = make_device(alice, "d1")
    own = raise_alarm(make_rule(alice, condition="above", threshold=1), device)
    bob = make_user("bob")
    bobs_device, _ = make_device(bob, "bobs")
    bobs = raise_alarm(make_rule(bob, condition="above", threshold=1), bobs_device, minutes=9)
    response = alice_client.get(f"/alarms/?before={bobs.id}")
    data = page_data(response)
    assert [alarm["id"] for alarm in data["alarms"]] == [own.id]
    assert data["first_page"] is True
    assert f"Ignored before={bobs.id}: not one of your alarms".encode() in response.content


def test_header_badge_counts_active_unacknowledged_alarms_on_every_page(alice_client, alice):
    device, _ = make_device(alice, "d1")
    for path in ("/", "/devices/d1/", "/alarms/"):
        assert badge(alice_client.get(path)) == {
            "count": 0,
            "text": "0",
            "severity": "",
            "hidden": True,
        }, path
    rule = make_rule(alice, condition="above", threshold=1, severity="minor")
    raise_alarm(rule, device, minutes=1)
    raise_alarm(rule, device, minutes=2, severity="major", state="cleared")
    raise_alarm(make_rule(alice, condition="below", threshold=1), device, severity="major")
    raise_alarm(
        make_rule(alice, condition="below", threshold=2),
        device,
        severity="critical",
        acknowledged=True,
    )
    bob = make_user("bob")
    bobs, _ = make_device(bob, "bobs")
    raise_alarm(make_rule(bob, condition="above", threshold=1), bobs, severity="critical")
    for path in ("/", "/devices/d1/", "/alarms/"):
        found = badge(alice_client.get(path))
        assert found == {"count": 2, "text": "2", "severity": "major", "hidden": False}, path


def test_header_badge_caps_its_text_at_99_plus(alice_client, alice):
    device, _ = make_device(alice, "d1")
    for rule in many_rules(alice, 100, device):
        raise_alarm(rule, device)
    assert badge(alice_client.get("/alarms/"))["text"] == "99+"


def test_login_page_has_no_badge(client):
    assert b'id="alarm-badge"' not in client.get("/accounts/login/").content


def test_fleet_embeds_each_devices_active_alarms_with_the_worst_listed_first(alice_client, alice):
    d1, _ = make_device(alice, "d1")
    make_device(alice, "d2")
    rules = many_rules(alice, FLEET_ALARMS + 3)
    for n, rule in enumerate(rules):
        # One critical among many warnings, raised in the middle.
        severity = "critical" if n == 7 else "warning"
        raise_alarm(rule, d1, minutes=n, severity=severity, acknowledged=n % 2 == 0)
    raise_alarm(
        make_rule(alice, condition="below", threshold=1), d1, severity="critical", state="cleared"
    )

    devices = {device["uid"]: device for device in page_data(alice_client.get("/"))["devices"]}
    alarms = devices["d1"]["alarms"]
    assert alarms["active"] == FLEET_ALARMS + 3
    assert alarms["unacknowledged"] == (FLEET_ALARMS + 3) // 2
    assert alarms["worst"] == "critical"
    assert len(alarms["open"]) == FLEET_ALARMS
    assert alarms["open"][0]["severity"] == "critical"
    assert {"id", "severity", "acknowledged"} == set(alarms["open"][0])
    assert devices["d2"]["alarms"] == {"active": 0, "unacknowledged": 0, "worst": None, "open": []}


def test_device_page_embeds_its_alarms_active_first_and_the_rules_that_apply(alice_client, alice):
    d1, _ = make_device(alice, "d1")
    d2, _ = make_device(alice, "d2")
    own = make_rule(alice, d1, name="own", condition="above", threshold=30)
    every = make_rule(alice, None, name="every", condition="no_data", silence=60)
    make_rule(alice, d2, name="elsewhere", condition="above", threshold=30)
    make_rule(make_user("bob"), None, name="bobs", condition="above", threshold=30)
    cleared = [
        raise_alarm(own, d1, minutes=100 + n, state="cleared")
        for n in range(DEVICE_CLEARED_ALARMS + 3)
    ]
    # Active ones come first, however old: one per rule, so more rules than the page lists.
    active = [raise_alarm(every, d1, minutes=1)] + [
        raise_alarm(rule, d1, minutes=2 + n) for n, rule in enumerate(many_rules(alice, 22))
    ]
    raise_alarm(own, d2, minutes=500)

    response = alice_client.get("/devices/d1/")
    data = page_data(response)
    ids = [alarm["id"] for alarm in data["alarms"]]
    newest_active = sorted(active, key=lambda alarm: alarm.started, reverse=True)
    assert (
        ids[:DEVICE_ACTIVE_ALARMS] == [alarm.id for alarm in newest_active][:DEVICE_ACTIVE_ALARMS]
    )
    assert (
        ids[DEVICE_ACTIVE_ALARMS:] == [alarm.id for alarm in cleared[::-1]][:DEVICE_CLEARED_ALARMS]
    )
    assert data["cleared_alarms"] == DEVICE_CLEARED_ALARMS
    assert all(alarm["device"] == "d1" for alarm in data["alarms"])
    names = [rule["name"] for rule in data["rules"]["items"]]
    assert names[:2] == ["own", "every"] and "elsewhere" not in names and "bobs" not in names
    assert data["rules"]["items"][1]["device"] is None
    assert data["rules"]["total"] == 2 + 22
    # The rule form, with the token its script sends.
    assert b'id="rule-form"' in response.content
    assert b'name="csrfmiddlewaretoken"' in response.content
    assert b'data-device="d1"' in response.content


def test_device_page_and_alarms_page_cap_the_rules_they_embed(alice_client, alice):
    make_device(alice, "d1")
    many_rules(alice, max(DEVICE_RULES, RULES_SHOWN) + 2)
    device_rules = page_data(alice_client.get("/devices/d1/"))["rules"]
    assert len(device_rules["items"]) == DEVICE_RULES
    assert device_rules["total"] == max(DEVICE_RULES, RULES_SHOWN) + 2
    page_rules = page_data(alice_client.get("/alarms/"))["rules"]
    assert len(page_rules["items"]) == RULES_SHOWN
    assert page_rules["total"] == max(DEVICE_RULES, RULES_SHOWN) + 2


INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>")
INLINE_HANDLER = re.compile(rb"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
INLINE_STYLE = re.compile(rb"<[^>]*\sstyle\s*=", re.IGNORECASE)


@pytest.mark.parametrize("path", ["/", "/devices/d1/", "/alarms/", "/alarms/?state=all&device=d1"])
def test_pages_carry_no_inline_script_handler_or_style_and_send_the_csp(alice_client, alice, path):
    device, _ = make_device(alice, "d1")
    rule = make_rule(
        alice, device, name='<script>alert("x")</script>', condition="above", threshold=1
    )
    raise_alarm(rule, device)
    response = alice_client.get(path)
    assert response.status_code == 200
    assert not INLINE_SCRIPT.search(response.content)
    assert not INLINE_HANDLER.search(response.content)
    assert not INLINE_STYLE.search(response.content)
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
