"""The CSV export neutralises text a spreadsheet would run as a formula; numbers stay numbers.

Issue 12, class 8, after OWASP's CSV-injection advice: a text value starting
with =, +, -, @, tab or carriage return gets a leading single quote and is
quoted. Numbers, negative ones included, and booleans are written as before.
"""

from __future__ import annotations

import csv
import io

import pytest

from tests.factories import make_device, make_user
from tests.telemetry.conftest_api import T0, api_client, store

pytestmark = pytest.mark.django_db

URL = "/api/v1/devices/d1/readings/"
WHOLE = {"start": str(T0), "end": str(T0 + 3_600_000), "format": "csv"}

HOSTILE = [
    ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("+1+1", "'+1+1"),
    ("-2+3", "'-2+3"),
    ("-5", "'-5"),  # text, not a number: the device sent a string
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
]
HARMLESS = ["ok", "1.4.2", "a=b", " =1", "'quoted", ""]


@pytest.fixture
def api():
    alice = make_user("alice")
    make_device(alice, "d1")
    return api_client(alice)


def export(api) -> tuple[str, list[list[str]]]:
    response = api.get(URL, WHOLE)
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    return text, list(csv.reader(io.StringIO(text)))


def test_text_a_spreadsheet_would_run_gets_a_leading_quote_and_is_quoted(api):
    store([("d1", f"s{i}", T0 + i, value) for i, (value, _) in enumerate(HOSTILE)])
    text, rows = export(api)
    assert [row[2] for row in rows[1:]] == [inert for _, inert in HOSTILE]
    lines = text.split("\r\n")
    assert (
        lines[1] == '"2025-11-26T06:00:00.000Z","s0","\'=HYPERLINK(""http://evil.example"",""x"")"'
    )
    # Every neutralised field is quoted, so its leading quote sits inside the quotes.
    for value, inert in HOSTILE:
        assert '"' + inert.replace('"', '""') + '"' in text, value
    # No cell of the file starts with a formula character.
    for row in rows[1:]:
        assert not row[2].startswith(("=", "+", "-", "@", "\t", "\r"))


def test_numbers_negative_ones_included_and_other_text_are_untouched(api):
    values = [-5, -0.25, -1e-300, 12, 3.5, True, False, *HARMLESS]
    store([("d1", f"v{i:02d}", T0 + i, value) for i, value in enumerate(values)])
    text, rows = export(api)
    assert [row[2] for row in rows[1:]] == [
        "-5", "-0.25", "-1e-300", "12", "3.5", "true", "false", *HARMLESS,
    ]  # fmt: skip
    assert "2025-11-26T06:00:00.000Z,v00,-5\r\n" in text
    assert "'" not in text.replace("'quoted", "")


def test_the_json_api_returns_the_values_as_stored(api):
    store([("d1", "s", T0, "=1+1"), ("d1", "n", T0 + 1, -5)])
    body = api.get(URL, {k: v for k, v in WHOLE.items() if k != "format"}).json()
    assert [r["value"] for r in body["results"]] == ["=1+1", -5]
