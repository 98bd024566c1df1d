"""The alarm REST endpoints (CONTRACT §6): validation naming the field, own objects only."""

from __future__ import annotations

import pytest

from alarms.models import Alarm, AlarmRule, Delivery, RuleState, Webhook
from tests.alarms.conftest import make_rule, store
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import api_client, field_errors

pytestmark = pytest.mark.django_db

RULES = "/api/v1/alarm-rules/"
ALARMS = "/api/v1/alarms/"
WEBHOOKS = "/api/v1/webhooks/"


@pytest.fixture
def alice():
    return make_user("alice")


@pytest.fixture
def api(alice):
    make_device(alice, "a-1")
    make_device(alice, "a-2")
    return api_client(alice)


def rule_body(**fields):
    body = {
        "name": "hot",
        "device": "a-1",
        "metric": "t",
        "condition": "above",
        "threshold": 30,
        "severity": "major",
    }
    body.update(fields)
    return body


def test_rule_created_read_listed_and_shown_with_every_field(api):
    response = api.post(RULES, rule_body(clear=25, **{"for": 60}), format="json")
    assert response.status_code == 201, response.content
    rule = response.json()
    assert rule | {"id": 0, "created": "", "updated": ""} == {
        "id": 0,
        "name": "hot",
        "device": "a-1",
        "metric": "t",
        "condition": "above",
        "threshold": 30.0,
        "low": None,
        "high": None,
        "value": None,
        "silence": None,
        "for": 60,
        "clear": 25.0,
        "severity": "major",
        "enabled": True,
        "created": "",
        "updated": "",
    }
    assert api.get(f"{RULES}{rule['id']}/").json() == rule
    assert api.get(RULES).json() == [rule]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"condition": "sideways"}, "condition"),
        ({"severity": "meh"}, "severity"),
        ({"threshold": None}, "threshold"),
        ({"threshold": "30"}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"low": 1}, "low"),
        ({"value": 3}, "value"),
        ({"silence": 30}, "silence"),
        ({"clear": 31}, "clear"),
        ({"for": -1}, "for"),
        ({"for": 10**9}, "for"),
        ({"device": "nope"}, "device"),
        ({"device": 7}, "device"),
        ({"metric": "bad metric"}, "metric"),
        ({"metric": ""}, "metric"),
        ({"name": ""}, "name"),
        ({"condition": "below", "clear": 29}, "clear"),
        ({"condition": "outside", "threshold": None, "low": 5}, "high"),
        ({"condition": "outside", "threshold": None, "low": 5, "high": 5}, "high"),
        ({"condition": "equals", "threshold": None}, "value"),
        ({"condition": "equals", "threshold": None, "value": [1]}, "value"),
        ({"condition": "equals", "threshold": None, "value": "x" * 300}, "value"),
        ({"condition": "no_data", "threshold": None}, "silence"),
        ({"condition": "no_data", "threshold": None, "silence": 0}, "silence"),
        ({"condition": "no_data", "threshold": None, "silence": 5, "for": 5}, "for"),
    ],
)
def test_invalid_rule_is_a_400_naming_the_field(api, changes, field):
    body = {**rule_body(), **changes}
    assert field in field_errors(api.post(RULES, body, format="json"))
    assert not AlarmRule.objects.exists()


def test_each_condition_is_accepted_with_its_parameters(api):
    for changes in (
        {"condition": "below", "threshold": -5, "clear": 0},
        {"condition": "outside", "threshold": None, "low": 1, "high": 2},
        {"condition": "equals", "threshold": None, "value": True},
        {"condition": "equals", "threshold": None, "value": "open"},
        {"condition": "no_data", "threshold": None, "silence": 30, "device": None},
    ):
        response = api.post(RULES, {**rule_body(), **changes}, format="json")
        assert response.status_code == 201, (changes, response.content)


def test_patch_changes_condition_and_resets_unused_parameters(api):
    rule = api.post(RULES, rule_body(clear=20), format="json").json()
    response = api.patch(
        f"{RULES}{rule['id']}/",
        {"condition": "outside", "low": 0, "high": 10},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert (response.json()["threshold"], response.json()["clear"]) == (None, None)
    bad = api.patch(f"{RULES}{rule['id']}/", {"high": -1}, format="json")
    assert "high" in field_errors(bad)


def test_changing_what_a_rule_watches_clears_its_alarms_and_forgets_its_state(alice, api):
    rule = api.post(RULES, rule_body(), format="json").json()
    store("a-1", [(0, 50)])
    assert Alarm.objects.get().state == "active"
    api.patch(f"{RULES}{rule['id']}/", {"threshold": 60}, format="json")
    alarm = Alarm.objects.get()
    assert alarm.state == "cleared"
    assert [(e.kind, e.user) for e in alarm.events.all()] == [("raised", None), ("cleared", alice)]
    assert not RuleState.objects.exists()
    api.patch(f"{RULES}{rule['id']}/", {"name": "renamed"}, format="json")  # no restart


def test_rules_per_user_are_limited(api, settings):
    settings.HUB = {**settings.HUB, "ALARM_RULES_PER_USER": 2}
    for _ in range(2):
        assert api.post(RULES, rule_body(), format="json").status_code == 201
    errors = field_errors(api.post(RULES, rule_body(), format="json"))
    assert "HUB_ALARM_RULES_PER_USER" in errors["limit"][0]


def test_others_rules_alarms_and_webhooks_are_404(alice, api):
    bob = make_user("bob")
    bobs_device, _ = make_device(bob, "b-1")
    rule = make_rule(bob, bobs_device, condition="above", threshold=1)
    store("b-1", [(0, 5)])
    alarm = Alarm.objects.get()
    hook = Webhook.objects.create(owner=bob, url="http://192.0.2.1/", secret="s" * 16)
    for path in (f"{RULES}{rule.id}/", f"{ALARMS}{alarm.id}/", f"{WEBHOOKS}{hook.id}/"):
        assert api.get(path).status_code == 404
        assert api.delete(path).status_code in (404, 405)
    assert api.post(f"{ALARMS}{alarm.id}/ack/").status_code == 404
    assert api.post(f"{ALARMS}{alarm.id}/clear/").status_code == 404
    assert api.get(ALARMS).json()["results"] == []
    assert api.get(RULES).json() == []
    assert "device" in field_errors(api.post(RULES, rule_body(device="b-1"), format="json"))
    assert Alarm.objects.get().state == "active"


def test_alarm_list_is_newest_first_and_filtered(alice, api):
    make_rule(alice, None, condition="above", threshold=10, severity="critical")
    make_rule(alice, None, condition="below", threshold=0, severity="warning")
    store("a-1", [(0, 50), (1000, 5)])  # raised, cleared
    store("a-2", [(2000, -1)])  # active, below
    store("a-1", [(3000, 60)])  # active again
    listing = api.get(ALARMS).json()
    assert [(a["device"], a["state"]) for a in listing["results"]] == [
        ("a-1", "active"),
        ("a-2", "active"),
        ("a-1", "cleared"),
    ]
    assert set(listing) == {"next", "previous", "results"}
    assert len(api.get(ALARMS, {"state": "active"}).json()["results"]) == 2
    assert len(api.get(ALARMS, {"device": "a-2"}).json()["results"]) == 1
    assert len(api.get(ALARMS, {"severity": "critical"}).json()["results"]) == 2
    assert len(api.get(ALARMS, {"acknowledged": "false"}).json()["results"]) == 3
    assert api.get(ALARMS, {"acknowledged": "true"}).json()["results"] == []
    rule_id = listing["results"][1]["rule"]
    assert len(api.get(ALARMS, {"rule": rule_id}).json()["results"]) == 1
    for name, value in (
        ("state", "open"),
        ("acknowledged", "maybe"),
        ("severity", "x"),
        ("rule", "one"),
    ):
        assert name in field_errors(api.get(ALARMS, {name: value}))


def test_ack_and_clear_by_hand_are_independent_and_recorded_as_events(alice, api):
    make_rule(alice, None, condition="above", threshold=10)
    store("a-1", [(0, 50)])
    alarm_id = Alarm.objects.get().id
    acked = api.post(f"{ALARMS}{alarm_id}/ack/")
    assert acked.status_code == 200
    body = acked.json()
    assert (body["state"], body["acknowledged"], body["acknowledged_by"]) == (
        "active",
        True,
        "alice",
    )
    assert body["acknowledged_at"]
    assert api.post(f"{ALARMS}{alarm_id}/ack/").json()["events"] == body["events"]  # no change
    cleared = api.post(f"{ALARMS}{alarm_id}/clear/").json()
    assert (cleared["state"], cleared["acknowledged"]) == ("cleared", True)
    assert [(e["kind"], e["user"]) for e in cleared["events"]] == [
        ("raised", None),
        ("acknowledged", "alice"),
        ("cleared", "alice"),
    ]
    detail = api.get(f"{ALARMS}{alarm_id}/").json()
    assert set(detail) == {
        "id",
        "rule",
        "name",
        "device",
        "metric",
        "severity",
        "state",
        "acknowledged",
        "started",
        "cleared",
        "acknowledged_at",
        "acknowledged_by",
        "value",
        "peak",
        "events",
    }
    # The condition still holds: the next reading raises a new alarm.
    store("a-1", [(1000, 51)])
    assert Alarm.objects.filter(state="active").exclude(id=alarm_id).count() == 1


def test_webhook_created_with_secret_shown_once_and_deliveries_listed(alice, api, settings):
    settings.HUB = {**settings.HUB, "WEBHOOK_ALLOW_PRIVATE": True}
    response = api.post(WEBHOOKS, {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert response.status_code == 201, response.content
    hook = response.json()
    assert len(hook["secret"]) >= 32
    assert hook["deliveries"] == [] and hook["enabled"] is True
    shown = api.get(f"{WEBHOOKS}{hook['id']}/").json()
    assert "secret" not in shown
    make_rule(alice, None, condition="above", threshold=10)
    store("a-1", [(0, 50)])
    [delivery] = api.get(WEBHOOKS).json()[0]["deliveries"]
    assert (delivery["event"], delivery["state"], delivery["attempts"]) == (
        "alarm.raised",
        "pending",
        0,
    )
    assert Delivery.objects.get().webhook_id == hook["id"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8000/hook",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "ftp://example.com/",
        "http://user:pw@192.0.2.1/",
        "not a url",
    ],
)
def test_webhook_urls_that_are_not_public_are_refused_naming_url(api, url):
    assert "url" in field_errors(api.post(WEBHOOKS, {"url": url}, format="json"))
    assert not Webhook.objects.exists()


def test_webhook_url_change_to_a_private_address_is_refused(api):
    hook = api.post(WEBHOOKS, {"url": "http://93.184.215.14/hook"}, format="json")
    assert hook.status_code == 201, hook.content
    patch = api.patch(f"{WEBHOOKS}{hook.json()['id']}/", {"url": "http://10.0.0.1/"}, format="json")
    assert "url" in field_errors(patch)
    assert Webhook.objects.get().url == "http://93.184.215.14/hook"


def test_alarm_list_with_a_bad_cursor_is_a_400_naming_it(api):
    assert "cursor" in field_errors(api.get(ALARMS, {"cursor": "not-a-cursor"}))


def test_bad_ids_in_paths_are_json_404s(api):
    for path in (f"{RULES}x/", f"{ALARMS}1e3/", f"{WEBHOOKS}{10**30}/", f"{ALARMS}-1/ack/"):
        response = api.get(path) if "ack" not in path else api.post(path)
        assert response.status_code == 404
        assert response.json()["detail"].startswith("no such")
