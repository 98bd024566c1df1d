"""Throttling: per user, per address when anonymous, and stricter for the token endpoint."""

from __future__ import annotations

import ast

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.factories import make_user
from tests.hub.test_settings import run_hub
from tests.telemetry.conftest_api import api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(monkeypatch):
    """Set throttle rates for one test (the suite runs without throttling)."""
    cache.clear()

    def set_rates(**scopes: str) -> None:
        for scope, rate in scopes.items():
            monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, scope, rate)

    yield set_rates
    cache.clear()


def test_each_user_has_their_own_budget(rates):
    rates(user="3/min")
    alice, bob = api_client(make_user("alice")), api_client(make_user("bob"))
    assert [alice.get("/api/v1/devices/").status_code for _ in range(3)] == [200] * 3
    throttled = alice.get("/api/v1/latest/")
    assert throttled.status_code == 429
    assert "throttled" in throttled.json()["detail"]
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert bob.get("/api/v1/devices/").status_code == 200


def test_token_endpoint_is_throttled_per_address_more_strictly(rates):
    rates(token="2/min", anon="100/min")
    make_user("carol", password="right-password")
    client = APIClient()
    tries = [
        client.post("/api/v1/auth/token/", {"username": "carol", "password": "wrong"}).status_code
        for _ in range(2)
    ]
    assert tries == [400, 400]
    again = client.post("/api/v1/auth/token/", {"username": "carol", "password": "right-password"})
    assert again.status_code == 429
    # Other anonymous requests still have their own budget.
    assert client.get("/api/schema/").status_code == 200


def test_off_means_no_throttling(rates):
    rates(user=None)
    alice = api_client(make_user("alice"))
    assert {alice.get("/api/v1/devices/").status_code for _ in range(50)} == {200}


@pytest.mark.parametrize(
    ("name", "value"),
    [("HUB_THROTTLE_USER", "lots"), ("HUB_THROTTLE_ANON", "10"),
     ("HUB_THROTTLE_TOKEN", "10/fortnight"), ("HUB_THROTTLE_USER", "-1/min")],
)  # fmt: skip
def test_a_malformed_rate_stops_start_up_naming_it(tmp_path, name, value):
    done = run_hub("check", HUB_VAR_DIR=str(tmp_path), **{name: value})
    assert done.returncode == 2
    assert name in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_rates_are_read_from_the_environment(tmp_path):
    code = (
        "from django.conf import settings as s; print(s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'])"
    )
    done = run_hub(
        "shell",
        "--no-imports",
        "-c",
        code,
        HUB_VAR_DIR=str(tmp_path),
        HUB_THROTTLE_USER="5/s",
        HUB_THROTTLE_TOKEN="off",
    )
    assert done.returncode == 0, done.stderr
    # Commands (REST and WebSocket together) run at the REST throttle's rate.
    rates = ast.literal_eval(done.stdout.strip())
    assert {name: rates[name] for name in ("user", "anon", "token", "commands")} == {
        "user": "5/s",
        "anon": "120/min",
        "token": None,
        "commands": "5/s",
    }
