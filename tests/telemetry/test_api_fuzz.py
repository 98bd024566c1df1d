"""No query parameter or uid, however wrong, makes a GET endpoint answer 500."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.serializers import encode_cursor
from telemetry.series import MAX_TS_MS, MIN_TS_MS
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import T0, api_client, store

pytestmark = pytest.mark.django_db

ENDPOINTS: dict[str, tuple[str, ...]] = {
    "/api/v1/devices/": ("format",),
    "/api/v1/devices/d1/": ("format",),
    "/api/v1/devices/d1/latest/": ("format",),
    "/api/v1/latest/": ("devices", "format"),
    "/api/v1/devices/d1/readings/": ("metric", "start", "end", "limit", "cursor", "format"),
    "/api/v1/devices/d1/series/": ("metric", "start", "end", "interval", "points", "tz", "format"),
}

NASTY = [
    "",
    " ",
    "\x00",
    "t\x00",
    "0",
    "-0",
    "-1",
    "1.5",
    "1e309",
    "NaN",
    "-inf",
    "9" * 400,
    "-" + "9" * 30,
    "١٢٣",
    "1_000",
    str(MIN_TS_MS),
    str(MAX_TS_MS),
    str(MIN_TS_MS - 1),
    str(MAX_TS_MS + 1),
    str(T0),
    str(T0 + 3_600_000),
    "2025-11-26T06:00:00Z",
    "2025-11-26T06:00:00 01:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59.999Z",
    "9999-12-31T23:59:59.999-23:59",
    "2016-12-31T23:59:60Z",
    "10s",
    "90s",
    "1m",
    "1d",
    "1w",
    "1mo",
    "0s",
    "t",
    "t,b",
    "t,,b",
    ",",
    "d1",
    "d1,ghost,x y",
    "csv",
    "json",
    "api",
    "UTC",
    "Europe/Berlin",
    "../../etc/passwd",
    "%00",
    "🙂" * 50,
    encode_cursor((T0 * 1000, "t")),
    encode_cursor((MIN_TS_MS * 1000, "t")),
    encode_cursor((MAX_TS_MS * 1000 + 999, "t")),
    "W10",
    "-_-_",
    "[" * 300,
]

scalar = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=200),
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(str),
)
# A list value makes the client repeat the parameter.
value = st.one_of(scalar, st.lists(scalar, min_size=2, max_size=3))


def params_for(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={name: value for name in (*names, "other")})


@pytest.fixture
def api():
    alice = make_user("alice")
    make_device(alice, "d1")
    make_device(make_user("bob"), "bobs")
    store(
        [("d1", "t", T0 + i * 7_000, float(i)) for i in range(50)]
        + [("d1", "b", T0 + i * 11_000, i % 2 == 0) for i in range(20)]
        + [("d1", "s", T0 + i * 13_000, f"v{i}") for i in range(10)]
    )
    return api_client(alice)


def get(api, path: str, params: dict[str, Any]) -> int:
    # The test client re-raises a view's exception, so a 500 fails loudly here.
    response = api.get(path, params)
    if response.streaming:
        b"".join(response.streaming_content)
    assert response.status_code < 500
    if response.status_code == 400 and response["Content-Type"] == "application/json":
        body = response.json()
        assert isinstance(body, dict)
        assert all(isinstance(messages, list) for messages in body.values())
    return response.status_code


FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_random_query_parameters_never_give_a_server_error(api, path):
    @FUZZ
    @given(params=params_for(ENDPOINTS[path]))
    def check(params: dict[str, Any]) -> None:
        assert get(api, path, params) in (200, 400)

    check()


@FUZZ
@given(uid=st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=100)))
def test_random_uids_in_paths_never_give_a_server_error(api, uid):
    for suffix in ("", "latest/", "readings/", "series/?metric=t"):
        status = get(api, f"/api/v1/devices/{quote(uid, safe='')}/{suffix}", {})
        assert status in (200, 400, 404)
