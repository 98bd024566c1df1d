"""Raw readings: JSON pages with a keyset cursor, CSV streamed whole, 400s naming the parameter."""

from __future__ import annotations

import csv
import io
from urllib.parse import parse_qs, urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

import telemetry.api
from telemetry.codec import format_ts
from telemetry.serializers import encode_cursor
from telemetry.values import datetime_to_ms
from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import T0, api_client, field_errors, store

pytestmark = pytest.mark.django_db

URL = "/api/v1/devices/d1/readings/"
WHOLE = {"start": str(T0), "end": str(T0 + 86_400_000)}


@pytest.fixture
def alice():
    return make_user("alice")


@pytest.fixture
def api(alice):
    return api_client(alice)


@pytest.fixture
def device(alice):
    return make_device(alice, "d1")[0]


def walk(api: APIClient, params: dict[str, str], between=None) -> list[tuple[str, str]]:
    """Follow `next` links to the end; call `between(page_number)` after each page."""
    seen: list[tuple[str, str]] = []
    response = api.get(URL, params)
    page = 0
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        seen.extend((row["ts"], row["metric"]) for row in body["results"])
        page += 1
        if between is not None:
            between(page)
        if body["next"] is None:
            return seen
        assert body["next"].startswith("http://testserver/api/v1/devices/d1/readings/?")
        response = api.get(body["next"])


def test_readings_are_ascending_by_ts_then_metric_in_their_sent_types(api, device):
    store(
        [
            ("d1", "temp", T0 + 2000, 21.5),
            ("d1", "door", T0 + 1000, True),
            ("d1", "count", T0 + 1000, 7),
            ("d1", "fw", T0, "1.4.2"),
        ]
    )
    response = api.get(URL, WHOLE)
    assert response.status_code == 200
    assert response.json() == {
        "next": None,
        "results": [
            {"ts": "2025-11-26T06:00:00.000Z", "metric": "fw", "value": "1.4.2"},
            {"ts": "2025-11-26T06:00:01.000Z", "metric": "count", "value": 7},
            {"ts": "2025-11-26T06:00:01.000Z", "metric": "door", "value": True},
            {"ts": "2025-11-26T06:00:02.000Z", "metric": "temp", "value": 21.5},
        ],
    }


def test_metric_filter_and_range_are_applied(api, device):
    store([("d1", m, T0 + i * 1000, float(i)) for i in range(10) for m in ("a", "b")])
    params = {
        "metric": "b",
        "start": "2025-11-26T06:00:02Z",
        "end": "2025-11-26T07:00:05+01:00",
    }
    body = api.get(URL, params).json()
    assert [(r["metric"], r["value"]) for r in body["results"]] == [
        ("b", 2.0),
        ("b", 3.0),
        ("b", 4.0),
    ]


def test_range_defaults_to_the_last_hour(api, device):
    from django.utils import timezone

    now = datetime_to_ms(timezone.now())
    store([("d1", "t", now - 7_200_000, 1.0), ("d1", "t", now - 1_800_000, 2.0)])
    body = api.get(URL).json()
    assert [r["value"] for r in body["results"]] == [2.0]
    only_end = api.get(URL, {"end": str(now - 3_600_000)}).json()
    assert [r["value"] for r in only_end["results"]] == [1.0]


def test_others_and_unknown_devices_are_404(api):
    bob = make_user("bob")
    make_device(bob, "bobs")
    store([("bobs", "t", T0, 1.0)])
    for uid in ("bobs", "ghost", "bad%00uid"):
        for params in ({}, {"format": "csv"}, {"limit": "0"}):
            response = api.get(f"/api/v1/devices/{uid}/readings/", params)
            assert response.status_code == 404
            assert response["Content-Type"].startswith("application/json")


def test_readings_require_authentication(device):
    assert APIClient().get(URL).status_code == 401
    assert APIClient().get(URL, {"format": "csv"}).status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "10001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "9" * 100}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),  # "[]"
        ({"cursor": encode_cursor((1, "bad metric"))}, "cursor"),
        ({"cursor": "x" * 2000}, "cursor"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2025-11-26T06:00:00"}, "start"),
        ({"end": "99999999999999999999"}, "end"),
        ({"end": "1e12"}, "end"),
        ({"start": "2000", "end": "1000"}, "start"),
        ({"start": "1000", "end": "1000"}, "start"),
        ({"metric": "has space"}, "metric"),
        ({"metric": "a\x00b"}, "metric"),
        ({"metric": "m" * 129}, "metric"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(api, device, params, field):
    assert field in field_errors(api.get(URL, params))
    # The same check applies to the CSV export, whose errors are JSON too.
    if "format" not in params:
        response = api.get(URL, {**params, "format": "csv"})
        assert field in field_errors(response)
        assert response["Content-Type"].startswith("application/json")


def test_blank_parameters_mean_not_given(api, device):
    store([("d1", "t", T0, 1.0)])
    response = api.get(URL, {**WHOLE, "metric": "", "limit": "", "cursor": ""})
    assert [r["value"] for r in response.json()["results"]] == [1.0]


def test_repeated_parameters_use_the_last_value(api, device):
    store([("d1", "a", T0, 1.0), ("d1", "b", T0, 2.0)])
    response = api.get(URL, {**WHOLE, "metric": ["a", "b"]})
    assert [r["metric"] for r in response.json()["results"]] == ["b"]


def test_limit_caps_the_page_and_next_is_an_absolute_url_with_the_range_pinned(api, device):
    store([("d1", "t", T0 + i, float(i)) for i in range(5)])
    response = api.get(URL, {"start": "2025-11-26T06:00:00Z", "limit": "2", "metric": "t"})
    body = response.json()
    assert len(body["results"]) == 2
    query = parse_qs(urlsplit(body["next"]).query)
    assert query["start"] == [str(T0)]
    assert query["metric"] == ["t"] and query["limit"] == ["2"]
    assert int(query["end"][0]) > T0


def test_page_exactly_full_at_the_end_has_no_next(api, device):
    store([("d1", "t", T0 + i, float(i)) for i in range(4)])
    body = api.get(URL, {**WHOLE, "limit": "4"}).json()
    assert len(body["results"]) == 4 and body["next"] is None


@pytest.mark.parametrize("limit", [1, 3, 7, 50])
def test_cursor_walk_returns_every_row_once_in_order(api, device, limit):
    # Two metrics per instant, so page boundaries fall between rows with equal ts.
    rows = [("d1", m, T0 + (i // 3) * 1000, float(i)) for i in range(60) for m in ("a", "b")]
    rows = list({(u, m, t): v for u, m, t, v in rows}.items())
    store([(u, m, t, v) for (u, m, t), v in rows])
    expected = sorted((format_ts(t), m) for (_, m, t), _ in rows)
    assert walk(api, {**WHOLE, "limit": str(limit)}) == expected


def test_cursor_walk_neither_skips_nor_repeats_while_readings_arrive(api, device):
    store([("d1", m, T0 + i * 1000, float(i)) for i in range(100) for m in ("a", "b")])
    later = [("d1", "c", T0 + 150_000 + i, 1.0) for i in range(5)]
    later += [("d1", "a", T0 + 99_000 + 1, 2.0)]  # just after the original last row
    earlier = [("d1", "z", T0 + 500 + i * 1000, 3.0) for i in range(5)]  # before the cursor

    def arrive(page: int) -> None:
        if page == 3:
            store(later + earlier)

    seen = walk(api, {**WHOLE, "limit": "30"}, between=arrive)
    assert len(seen) == len(set(seen)), "a row was repeated"
    assert seen == sorted(seen)
    original = {(format_ts(T0 + i * 1000), m) for i in range(100) for m in ("a", "b")}
    assert original <= set(seen), "a row was skipped"
    assert {(format_ts(t), m) for _, m, t, _ in later} <= set(seen)
    # Rows that arrived behind the cursor are not fetched, and nothing else is.
    assert set(seen) == original | {(format_ts(t), m) for _, m, t, _ in later}


def test_cursor_from_one_metric_filter_works_with_another(api, device):
    store([("d1", m, T0 + i, float(i)) for i in range(10) for m in ("a", "b")])
    cursor = encode_cursor(((T0 + 4) * 1000, "a"))
    body = api.get(URL, {**WHOLE, "cursor": cursor}).json()
    assert body["results"][0] == {"ts": format_ts(T0 + 4), "metric": "b", "value": 4.0}
    assert len(body["results"]) == 11


def parse_csv(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode())))


def test_csv_streams_every_reading_of_the_range_with_a_header(api, device, monkeypatch):
    monkeypatch.setattr(telemetry.api, "CSV_ROWS_PER_CHUNK", 3)
    store(
        [("d1", "t", T0 + i * 1000, i + 0.5) for i in range(10)]
        + [
            ("d1", "note", T0 + 1, 'a "quoted", text'),
            ("d1", "door", T0 + 2, False),
            ("d1", "n", T0 + 3, 12),
        ]
    )
    response = api.get(URL, {**WHOLE, "format": "csv", "limit": "2"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="d1.csv"'
    chunks = list(response.streaming_content)
    assert len(chunks) >= 4
    rows = parse_csv(b"".join(chunks))
    assert rows[0] == ["ts", "metric", "value"]
    assert rows[1:5] == [
        ["2025-11-26T06:00:00.000Z", "t", "0.5"],
        ["2025-11-26T06:00:00.001Z", "note", 'a "quoted", text'],
        ["2025-11-26T06:00:00.002Z", "door", "false"],
        ["2025-11-26T06:00:00.003Z", "n", "12"],
    ]
    assert len(rows) == 1 + 13  # limit does not apply to the export


def test_csv_is_chosen_by_accept_header(api, device):
    store([("d1", "t", T0, 1.0)])
    response = api.get(URL, WHOLE, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and response.streaming
    assert parse_csv(b"".join(response.streaming_content)) == [
        ["ts", "metric", "value"],
        ["2025-11-26T06:00:00.000Z", "t", "1.0"],
    ]
    json_response = api.get(URL, WHOLE, HTTP_ACCEPT="application/json")
    assert json_response["Content-Type"] == "application/json"


def test_csv_of_an_empty_range_is_just_the_header(api, device):
    response = api.get(URL, {**WHOLE, "format": "csv", "metric": "nothing"})
    assert b"".join(response.streaming_content) == b"ts,metric,value\r\n"


def test_csv_streams_chunk_by_chunk_under_asgi(alice, device, monkeypatch):
    monkeypatch.setattr(telemetry.api, "CSV_ROWS_PER_CHUNK", 5)
    store([("d1", "t", T0 + i, float(i)) for i in range(23)])
    key = Token.objects.create(user=alice).key

    async def fetch() -> tuple[int, list[bytes]]:
        response = await AsyncClient().get(
            URL, {**WHOLE, "format": "csv"}, headers={"Authorization": f"Token {key}"}
        )
        # An async iterator: Django would read a sync one whole (and warn, an error here).
        return response.status_code, [chunk async for chunk in response.streaming_content]

    # From a sync test, async_to_sync runs the view's thread-sensitive code on this
    # thread, inside this test's transaction.
    status, chunks = async_to_sync(fetch)()
    assert status == 200
    assert len(chunks) == 5
    rows = parse_csv(b"".join(chunks))
    assert len(rows) == 24 and rows[-1] == ["2025-11-26T06:00:00.022Z", "t", "22.0"]


def test_order_desc_gives_newest_first_by_ts_then_metric(api, device):
    store([("d1", m, T0 + i * 1000, float(i)) for i in range(3) for m in ("a", "b")])
    body = api.get(URL, {**WHOLE, "order": "desc"}).json()
    assert [(r["ts"][17:23], r["metric"]) for r in body["results"]] == [
        ("02.000", "b"),
        ("02.000", "a"),
        ("01.000", "b"),
        ("01.000", "a"),
        ("00.000", "b"),
        ("00.000", "a"),
    ]


@pytest.mark.parametrize("limit", [1, 4, 7, 50])
def test_descending_cursor_walk_returns_every_row_once_newest_first(api, device, limit):
    rows = {(m, T0 + (i // 3) * 1000): float(i) for i in range(60) for m in ("a", "b", "c")}
    store([("d1", m, t, v) for (m, t), v in rows.items()])
    expected = sorted(((format_ts(t), m) for m, t in rows), reverse=True)
    seen = walk(api, {**WHOLE, "limit": str(limit), "order": "desc"})
    assert seen == expected


def test_descending_walk_skips_rows_arriving_behind_it_and_keeps_the_range(api, device):
    store([("d1", "a", T0 + i * 1000, float(i)) for i in range(100)])
    newer = [("d1", "a", T0 + 200_000 + i, 1.0) for i in range(5)]  # behind a newest-first walk
    older = [("d1", "b", T0 + 500 + i * 1000, 3.0) for i in range(5)]  # ahead of it

    def arrive(page: int) -> None:
        if page == 2:
            store(newer + older)

    seen = walk(api, {**WHOLE, "limit": "30", "order": "desc"}, between=arrive)
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    original = {(format_ts(T0 + i * 1000), "a") for i in range(100)}
    assert original <= set(seen)
    assert not {(format_ts(t), m) for _, m, t, _ in newer} & set(seen)


def test_csv_can_be_newest_first(api, device):
    store([("d1", "t", T0 + i, float(i)) for i in range(3)])
    response = api.get(URL, {**WHOLE, "format": "csv", "order": "desc"})
    rows = parse_csv(b"".join(response.streaming_content))
    assert [row[2] for row in rows[1:]] == ["2.0", "1.0", "0.0"]


def test_bad_order_is_400_naming_order(api, device):
    assert "order" in field_errors(api.get(URL, {"order": "newest"}))
