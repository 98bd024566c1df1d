"""Throttles count the client's real address: a spoofed X-Forwarded-For buys no fresh budget.

Issue 12, class 4. The token endpoint, the login form and the admin login share
one budget of password guesses per address (HUB_THROTTLE_TOKEN); behind a proxy
in HUB_TRUSTED_PROXIES the right-most forwarded address that is not a trusted
proxy is the client.
"""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from django.core.cache import cache
from django.test import Client, RequestFactory
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from core.throttling import client_address
from tests.factories import make_user
from tests.hub.test_settings import run_hub
from tests.telemetry.conftest_api import api_client

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
PROXY = "10.0.0.1"
_spoofed = (f"198.51.100.{n}" for n in itertools.count(1))


@pytest.fixture
def rates(monkeypatch):
    """Set throttle rates for one test (the suite runs without throttling)."""
    cache.clear()

    def set_rates(**scopes: str | None) -> None:
        for scope, rate in scopes.items():
            monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, scope, rate)

    yield set_rates
    cache.clear()


@pytest.fixture
def trusted(settings):
    """Trust the proxies of 10.0.0.0/8 and one IPv6 proxy."""

    def set_trusted(*networks: str) -> None:
        parsed = tuple(ipaddress.ip_network(n) for n in networks)
        settings.HUB = {**settings.HUB, "TRUSTED_PROXIES": parsed}

    return set_trusted


@pytest.fixture
def carol():
    return make_user("carol", password="right-password")


def guess(client: Client, path: str, *, peer: str, forwarded: str | None = None, password="x"):
    """POST one username/password guess from `peer`, maybe with an X-Forwarded-For."""
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post(path, {"username": "carol", "password": password}, **extra)


@pytest.mark.parametrize("path", [TOKEN, LOGIN, ADMIN_LOGIN])
def test_a_spoofed_forwarded_for_from_an_untrusted_peer_buys_no_fresh_budget(rates, carol, path):
    rates(token="2/min", anon="1000/min")
    client = APIClient()
    tries = [guess(client, path, peer="203.0.113.5", forwarded=next(_spoofed)) for _ in range(2)]
    assert [r.status_code for r in tries] == ([400, 400] if path == TOKEN else [200, 200])
    # A new forwarded-for each time: still the same peer, so the third guess is refused,
    # even with the right password.
    third = guess(
        client, path, peer="203.0.113.5", forwarded=next(_spoofed), password="right-password"
    )
    assert third.status_code == 429
    assert 0 < int(third["Retry-After"]) <= 60
    # Another address has its own budget.
    assert guess(client, path, peer="203.0.113.6").status_code in (200, 400)


def test_behind_a_trusted_proxy_the_right_most_untrusted_address_is_counted(rates, trusted, carol):
    rates(token="2/min", anon="1000/min")
    trusted("10.0.0.0/8")
    client = APIClient()
    # The client writes what it likes on the left; the proxies append what they saw.
    for _ in range(2):
        response = guess(client, TOKEN, peer=PROXY, forwarded=f"{next(_spoofed)}, 203.0.113.7")
        assert response.status_code == 400
    again = guess(client, TOKEN, peer=PROXY, forwarded=f"{next(_spoofed)}, 203.0.113.7")
    assert again.status_code == 429
    # Through two trusted proxies: the same client, the same budget.
    chained = f"{next(_spoofed)}, 203.0.113.7, 10.9.9.9"
    assert guess(client, TOKEN, peer=PROXY, forwarded=chained).status_code == 429
    # Another client behind the same proxy is counted apart from the first.
    assert guess(client, TOKEN, peer=PROXY, forwarded="203.0.113.8").status_code == 400


def test_forwarded_for_is_ignored_from_peers_that_are_not_trusted_proxies(rates, trusted, carol):
    rates(token="2/min", anon="1000/min")
    trusted("10.0.0.0/8")
    client = APIClient()
    # Each "client" claims a different address, but they all come from one untrusted peer.
    codes = [
        guess(client, TOKEN, peer="203.0.113.9", forwarded=f"10.0.0.{n}, 192.0.2.{n}").status_code
        for n in range(3)
    ]
    assert codes == [400, 400, 429]


def test_anonymous_requests_are_counted_per_real_address(rates):
    rates(anon="3/min")
    client = APIClient()
    codes = [
        client.get(
            "/api/schema/", REMOTE_ADDR="203.0.113.10", HTTP_X_FORWARDED_FOR=next(_spoofed)
        ).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]


def test_users_are_throttled_per_user_whatever_their_address(rates):
    rates(user="2/min")
    alice = api_client(make_user("alice"))
    codes = [
        alice.get("/api/v1/devices/", REMOTE_ADDR=f"203.0.113.{n}").status_code for n in range(3)
    ]
    assert codes == [200, 200, 429]


def test_the_token_endpoint_and_both_login_forms_share_one_budget_per_address(rates, carol):
    rates(token="3/min", anon="1000/min")
    client = Client()
    assert guess(client, TOKEN, peer="203.0.113.20").status_code == 400
    assert guess(client, LOGIN, peer="203.0.113.20").status_code == 200
    assert guess(client, ADMIN_LOGIN, peer="203.0.113.20").status_code == 200
    for path in (TOKEN, LOGIN, ADMIN_LOGIN):
        assert guess(client, path, peer="203.0.113.20").status_code == 429


@pytest.mark.parametrize("path", [LOGIN, ADMIN_LOGIN])
def test_a_throttled_login_form_answers_a_429_page_and_logs_nobody_in(rates, carol, path):
    rates(token="1/min")
    client = Client()
    assert guess(client, path, peer="203.0.113.30").status_code == 200
    refused = guess(client, path, peer="203.0.113.30", password="right-password")
    assert refused.status_code == 429
    assert refused["Content-Type"].startswith("text/html")
    page = refused.content.decode()
    assert "Too many login attempts" in page and "HUB_THROTTLE_TOKEN" in page
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "_auth_user_id" not in client.session
    # Showing the form costs nothing.
    assert client.get(path, REMOTE_ADDR="203.0.113.30").status_code == 200


def test_a_login_form_within_its_budget_logs_in(rates, carol):
    rates(token="2/min")
    client = Client()
    response = guess(client, LOGIN, peer="203.0.113.40", password="right-password")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(carol.pk)


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.1", None, "203.0.113.1"),
        ("203.0.113.1", "192.0.2.1", "203.0.113.1"),
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "192.0.2.1", "192.0.2.1"),
        ("10.0.0.1", "192.0.2.1, 192.0.2.2", "192.0.2.2"),
        ("10.0.0.1", "192.0.2.1,192.0.2.2 , 10.0.0.7", "192.0.2.2"),
        ("10.0.0.1", "192.0.2.1:5555", "192.0.2.1"),
        ("10.0.0.1", "[2001:db8::5]:443", "2001:db8::5"),
        ("10.0.0.1", "2001:db8::5", "2001:db8::5"),
        ("10.0.0.1", "::ffff:192.0.2.9", "192.0.2.9"),
        ("::ffff:10.0.0.1", "192.0.2.3", "192.0.2.3"),
        ("fd00::1", "192.0.2.4", "192.0.2.4"),
        # Junk where a trusted proxy writes an address: the proxy that passed it on counts.
        ("10.0.0.1", "192.0.2.1, not-an-address", "10.0.0.1"),
        ("10.0.0.1", "192.0.2.1, not-an-address, 10.0.0.2", "10.0.0.2"),
        ("10.0.0.1", "", "10.0.0.1"),
        # Every hop a trusted proxy: the farthest one.
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),
    ],
)
def test_client_address_takes_the_right_most_untrusted_hop(trusted, peer, forwarded, client):
    trusted("10.0.0.0/8", "fd00::/8")
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    assert client_address(RequestFactory().get("/", **extra)) == client


@pytest.mark.parametrize("value", ["10.0.0.0/33", "proxy.example", "10.0.0.1,,nope"])
def test_a_malformed_trusted_proxy_stops_start_up_naming_it(tmp_path, value):
    done = run_hub("check", HUB_VAR_DIR=str(tmp_path), HUB_TRUSTED_PROXIES=value)
    assert done.returncode == 2
    assert "HUB_TRUSTED_PROXIES" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_trusted_proxies_are_read_from_the_environment(tmp_path):
    code = "from core.conf import hub_settings as h; print([str(n) for n in h.TRUSTED_PROXIES])"
    done = run_hub(
        "shell",
        "--no-imports",
        "-c",
        code,
        HUB_VAR_DIR=str(tmp_path),
        HUB_TRUSTED_PROXIES="10.0.0.1, 172.16.0.0/12,fd00::/8",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['10.0.0.1/32', '172.16.0.0/12', 'fd00::/8']"
