"""The Django admin lists rules, alarms with their events, webhooks and deliveries."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from alarms.models import Alarm, Webhook
from tests.alarms.conftest import make_rule, store
from tests.factories import make_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    staff = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    client = Client()
    client.force_login(staff)
    device, _ = make_device(staff, "adm-1")
    make_rule(staff, device, condition="above", threshold=1)
    store("adm-1", [(0, 5)])
    return client


def test_admin_pages_show_rules_alarms_webhooks_and_deliveries(admin_client):
    alarm = Alarm.objects.get()
    for path in (
        "/admin/alarms/alarmrule/",
        "/admin/alarms/alarm/",
        f"/admin/alarms/alarm/{alarm.id}/change/",
        "/admin/alarms/webhook/",
        "/admin/alarms/delivery/",
    ):
        response = admin_client.get(path)
        assert response.status_code == 200, path


def test_admin_refuses_a_webhook_to_a_private_address(admin_client):
    owner = get_user_model().objects.get(username="root")
    response = admin_client.post(
        "/admin/alarms/webhook/add/",
        {"owner": owner.id, "url": "http://169.254.169.254/", "secret": "s" * 20, "enabled": "on"},
    )
    assert response.status_code == 200
    assert "not a public address" in response.content.decode()
    assert not Webhook.objects.exists()
