"""Webhook deliveries from the outbox to a real local receiver: signed, retried, in order."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import timedelta

import orjson
import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from alarms import delivery, metrics
from alarms.models import Alarm, Delivery, Webhook
from alarms.services import alarm_acknowledge, alarm_clear
from tests.alarms.conftest import make_rule, store
from tests.alarms.receiver import webhook_receiver
from tests.factories import make_device, make_user
from tests.support import async_wait_until
from tests.telemetry.conftest_api import api_client

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "a-webhook-secret-for-tests"


@pytest.fixture(autouse=True)
def quick(monkeypatch, settings):
    monkeypatch.setattr(delivery, "POLL_S", 0.05)
    monkeypatch.setattr(delivery, "BACKOFF_FIRST_S", 0.05)
    settings.HUB = {**settings.HUB, "WEBHOOK_ALLOW_PRIVATE": True, "WEBHOOK_TIMEOUT_SECONDS": 5}


@pytest.fixture
async def loop_running() -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(delivery.deliveries_run(stop))
    yield stop
    stop.set()
    await asyncio.wait_for(task, 10)


def setup(url: str, **hook) -> tuple:
    owner = make_user()
    device, _ = make_device(owner)
    make_rule(owner, device, condition="above", threshold=10)
    Webhook.objects.create(owner=owner, url=url, secret=SECRET, **hook)
    return owner, device


async def delivered(count: int) -> bool:
    states = await database_sync_to_async(
        lambda: list(Delivery.objects.values_list("state", flat=True))
    )()
    return len(states) == count and all(state == "delivered" for state in states)


async def test_delivery_is_signed_with_the_secret_and_carries_the_contract_body(loop_running):
    with webhook_receiver() as receiver:
        _, device = await database_sync_to_async(setup)(receiver.url)
        await database_sync_to_async(store)(device.uid, [(0, 42)])
        await async_wait_until(lambda: delivered(1), message="the delivery")
        [request] = receiver.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), request.raw, hashlib.sha256).hexdigest()
    assert request.headers["x-hub-signature-256"] == expected
    assert request.headers["content-type"] == "application/json"
    body = request.body
    row = await database_sync_to_async(Delivery.objects.get)()
    assert (body["event"], body["delivery"]) == ("alarm.raised", str(row.uid))
    assert request.headers["x-hub-delivery"] == str(row.uid)
    assert body["alarm"]["device"] == device.uid
    assert (body["alarm"]["state"], body["alarm"]["value"], body["alarm"]["peak"]) == (
        "active",
        42,
        42,
    )
    assert request.path == "/hook"


async def test_failed_delivery_is_retried_with_backoff_until_the_receiver_answers(loop_running):
    with webhook_receiver() as receiver:
        receiver.statuses = [500, 503]
        before = (metrics.WEBHOOK_FAILED._value.get(), metrics.WEBHOOK_DELIVERED._value.get())
        _, device = await database_sync_to_async(setup)(receiver.url)
        await database_sync_to_async(store)(device.uid, [(0, 42)])
        await async_wait_until(lambda: delivered(1), timeout=15, message="the delivery")
        ids = [request.body["delivery"] for request in receiver.requests]
    assert len(ids) == 3 and len(set(ids)) == 1  # the same delivery id every time
    row = await database_sync_to_async(Delivery.objects.get)()
    assert (row.attempts, row.last_status) == (3, 200)
    after = (metrics.WEBHOOK_FAILED._value.get(), metrics.WEBHOOK_DELIVERED._value.get())
    assert (after[0] - before[0], after[1] - before[1]) == (2, 1)
    page = await database_sync_to_async(lambda: Client().get("/metrics").content.decode())()
    assert 'hub_webhook_attempts_total{result="delivered"}' in page


async def test_changes_of_one_alarm_arrive_in_order_though_the_first_failed(loop_running):
    with webhook_receiver() as receiver:
        receiver.statuses = [500, 500]
        owner, device = await database_sync_to_async(setup)(receiver.url)

        def changes() -> None:
            store(device.uid, [(0, 42), (1000, 50)])
            alarm = Alarm.objects.get()
            alarm_acknowledge(alarm=alarm, user=owner)
            alarm_clear(alarm=alarm, user=owner)

        await database_sync_to_async(changes)()
        await async_wait_until(lambda: delivered(4), timeout=15, message="four deliveries")
        events = [request.body["event"] for request in receiver.requests]
    assert events[-4:] == ["alarm.raised", "alarm.updated", "alarm.acknowledged", "alarm.cleared"]
    assert events[:2] == ["alarm.raised", "alarm.raised"]


def test_every_body_names_who_acknowledged_the_alarm_whoever_made_the_change():
    owner, device = setup("http://127.0.0.1:9/hook")  # never sent: no delivery loop runs
    store(device.uid, [(0, 42)])
    alarm_acknowledge(alarm=Alarm.objects.get(), user=owner)
    store(device.uid, [(1000, 50)])  # the rule updates the acknowledged alarm
    store(device.uid, [(2000, 5)])  # and clears it
    bodies = [orjson.loads(row.body) for row in Delivery.objects.order_by("id")]
    assert [(body["event"], body["alarm"]["acknowledged_by"]) for body in bodies] == [
        ("alarm.raised", None),
        ("alarm.acknowledged", owner.username),
        ("alarm.updated", owner.username),
        ("alarm.cleared", owner.username),
    ]


async def test_a_private_address_is_refused_at_send_time_unless_allowed(loop_running, settings):
    settings.HUB = {**settings.HUB, "WEBHOOK_ALLOW_PRIVATE": False}
    with webhook_receiver() as receiver:
        _, device = await database_sync_to_async(setup)(receiver.url)
        await database_sync_to_async(store)(device.uid, [(0, 42)])

        async def refused() -> bool:
            row = await database_sync_to_async(Delivery.objects.first)()
            return row is not None and row.attempts >= 2

        await async_wait_until(refused, message="two refused attempts")
        row = await database_sync_to_async(Delivery.objects.get)()
        assert row.state == "pending" and "not a public address" in row.last_error
        assert receiver.requests == []


async def test_a_disabled_webhook_gets_no_deliveries(loop_running):
    with webhook_receiver() as receiver:
        _, device = await database_sync_to_async(setup)(receiver.url, enabled=False)
        await database_sync_to_async(store)(device.uid, [(0, 42)])
        assert await database_sync_to_async(Delivery.objects.count)() == 0


def test_delivery_gives_up_after_the_attempt_limit_and_the_next_change_goes_on(settings):
    settings.HUB = {**settings.HUB, "WEBHOOK_MAX_ATTEMPTS": 2}
    owner, device = setup("http://127.0.0.1:9/hook")
    store(device.uid, [(0, 42), (1000, 9)])  # raised, cleared
    for _ in range(2):
        [claimed] = delivery.deliveries_claim(now=timezone.now() + timedelta(hours=1))
        delivery.deliveries_record(
            outcomes=[delivery.Outcome(claimed.id, False, 500, "HTTP 500")], now=timezone.now()
        )
    first, second = Delivery.objects.order_by("id")
    assert (first.state, first.attempts, first.last_error) == ("failed", 2, "HTTP 500")
    [claimed] = delivery.deliveries_claim(now=timezone.now())
    assert claimed.id == second.id
    # Attempts and the last error, over REST.
    [hook] = api_client(owner).get("/api/v1/webhooks/").json()
    assert hook["last_error"] == "HTTP 500"
    shown = {d["event"]: (d["state"], d["attempts"], d["last_error"]) for d in hook["deliveries"]}
    assert shown["alarm.raised"] == ("failed", 2, "HTTP 500")
    assert shown["alarm.cleared"][:2] == ("pending", 1)
