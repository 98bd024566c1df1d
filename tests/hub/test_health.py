"""GET /healthz checks the database and the channel layer for real."""

import pytest
from django.test import Client

from tests.support import free_port

pytestmark = pytest.mark.django_db


def test_healthz_is_ok_with_database_and_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    response = Client().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"]["ok"] and body["channel_layer"]["ok"]


def test_healthz_with_the_machine_redis_is_ok(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]},
        }
    }
    assert Client().get("/healthz").status_code == 200


def test_healthz_is_503_when_the_channel_layer_is_down(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail" and not body["channel_layer"]["ok"] and body["database"]["ok"]
