"""Prometheus metrics: GET /metrics, the bridge's series, ingest and live-socket counters."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from prometheus_client import REGISTRY, generate_latest
from rest_framework.authtoken.models import Token

from bridges.mqtt.bridge import Bridge
from bridges.mqtt.config import BridgeConfig
from hub.metrics import bridge_watch
from telemetry.ingest import ingest_batch_handle
from tests.deploy.harness import Samples
from tests.factories import make_device, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def scrape() -> Samples:
    return Samples(generate_latest(REGISTRY).decode())


def test_metrics_page_is_prometheus_text_with_device_and_command_counts():
    owner = make_user()
    make_device(owner, "m-1")
    device, _ = make_device(owner, "m-2")
    device.online = True
    device.save(update_fields=["online"])
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = Samples(response.content.decode())
    assert samples.value("hub_devices", state="online") == 1
    assert samples.value("hub_devices", state="offline") == 1
    assert samples.value("hub_devices", state="disabled") == 0
    assert samples.value("hub_commands", status="pending") == 0
    # This request is counted by the next one.
    after = Samples(Client().get("/metrics").content.decode())
    assert after.value("hub_http_requests_total", method="GET", code="200") >= 1


def test_bridge_series_are_read_from_its_counters_at_scrape_time():
    bridge = Bridge(BridgeConfig(), layer=InMemoryChannelLayer())
    bridge_watch(bridge)
    before = scrape()
    bridge.stats.messages += 7
    bridge.stats.readings += 20
    bridge.stats.rejections["invalid_json"] += 2
    bridge.stats.layer_errors += 1
    bridge.connected.set()
    after = scrape()
    assert (
        after.value("hub_mqtt_messages_received_total")
        - before.value("hub_mqtt_messages_received_total")
        == 7
    )
    assert (
        after.value("hub_readings_received_total") - before.value("hub_readings_received_total")
        == 20
    )
    assert (
        after.value("hub_rejections_total", reason="invalid_json")
        - before.value("hub_rejections_total", reason="invalid_json")
        == 2
    )
    assert (
        after.value("hub_channel_layer_errors_total", component="bridge")
        - before.value("hub_channel_layer_errors_total", component="bridge")
        == 1
    )
    assert after.value("hub_mqtt_connected") >= 1
    assert after.value("hub_bridge_batches_in_flight") == before.value(
        "hub_bridge_batches_in_flight"
    )


async def test_ingest_counts_the_batch_its_readings_and_lag():
    await database_sync_to_async(lambda: make_device(make_user(), "i-1"))()
    before = scrape()
    now = int(time.time() * 1000)
    message = {
        "type": "ingest.batch",
        "batch": "b-1",
        "received": now - 250,
        "readings": [["i-1", "t", now - 1000, 1.5], ["i-1", "t", now - 999, 2.5]],
    }
    layer = get_channel_layer()
    assert await ingest_batch_handle(layer, message)
    assert await ingest_batch_handle(layer, {**message, "batch": "b-2"})
    assert await ingest_batch_handle(
        layer, {**message, "batch": "b-3", "readings": [["nobody", "t", now, 1]]}
    )
    assert not await ingest_batch_handle(layer, {"type": "ingest.batch", "batch": "broken"})
    # A batch whose device event is malformed is dropped whole, its readings too.
    assert not await ingest_batch_handle(
        layer, {**message, "batch": "b-4", "events": [["status", "i-1", True]]}
    )
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("hub_ingest_batches_total", result="stored") == 3
    assert delta("hub_ingest_batches_total", result="malformed") == 2
    assert delta("hub_readings_stored_total") == 2
    assert delta("hub_readings_duplicate_total") == 2
    assert delta("hub_readings_unknown_device_total") == 1
    assert delta("hub_ingest_batch_readings_sum") == 5
    assert delta("hub_ingest_lag_seconds_count") == 3
    assert delta("hub_ingest_lag_seconds_sum") >= 0.75


async def test_live_sockets_are_counted_open_and_closed_with_their_frames():
    def user_token() -> str:
        user = make_user()
        make_device(user, "w-1")
        return Token.objects.create(user=user).key

    from hub.asgi import application

    token = await database_sync_to_async(user_token)()
    before = scrape()
    anonymous = WebsocketCommunicator(application, "/ws/telemetry/")
    await anonymous.connect()
    assert (await anonymous.receive_output(5))["type"] == "websocket.close"
    socket = WebsocketCommunicator(application, f"/ws/telemetry/?token={token}")
    assert (await socket.connect())[0]
    await socket.send_json_to({"type": "subscribe", "devices": ["w-1"]})
    assert (await socket.receive_json_from(5))["type"] == "subscribed"
    opened = scrape()
    await socket.disconnect()
    closed = scrape()
    assert opened.value("hub_ws_connections") - before.value("hub_ws_connections") == 1
    assert closed.value("hub_ws_connections") == before.value("hub_ws_connections")
    assert (
        opened.value("hub_ws_connects_total", result="unauthenticated")
        - before.value("hub_ws_connects_total", result="unauthenticated")
        == 1
    )
    assert (
        opened.value("hub_ws_frames_sent_total", kind="reply")
        - before.value("hub_ws_frames_sent_total", kind="reply")
        == 1
    )
