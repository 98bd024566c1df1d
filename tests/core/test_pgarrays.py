"""The text form of array parameters reads back as the same values in PostgreSQL."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from core.pgarrays import array_text, int_array, text_array

pytestmark = pytest.mark.django_db

# PostgreSQL text holds any character but NUL.
TEXT = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=20)


def _read_back(sql: str, value: str) -> list:
    with connection.cursor() as cursor:
        cursor.execute(sql, [value])
        (row,) = cursor.fetchall()
    return row[0]


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT, max_size=8))
def test_strings_read_back_as_themselves(values):
    assert _read_back("SELECT %s::text[]", text_array(values)) == values


@pytest.mark.parametrize(
    "values",
    [[], [""], ["NULL"], ['a"b', "c\\d", "{x,y}", " spaced ", "é ☃"], ["\\", '"', ","]],
)
def test_strings_that_mean_something_in_the_text_form(values):
    assert _read_back("SELECT %s::text[]", text_array(values)) == values


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8))
def test_integers_read_back_as_themselves(values):
    assert _read_back("SELECT %s::bigint[]", int_array(values)) == values


# Aware datetimes in PostgreSQL's range, to the microsecond, in any UTC offset.
MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.builds(
        timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))
    ),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=8))
def test_integers_and_nulls_read_back_as_themselves(values):
    assert _read_back("SELECT %s::bigint[]", array_text(values)) == values


@settings(max_examples=100, deadline=None)
@given(st.lists(st.none() | st.booleans(), max_size=8))
def test_booleans_read_back_as_themselves(values):
    assert _read_back("SELECT %s::boolean[]", array_text(values)) == values


@settings(max_examples=100, deadline=None)
@given(st.lists(st.none() | TEXT, max_size=8))
def test_strings_and_nulls_read_back_as_themselves(values):
    assert _read_back("SELECT %s::text[]", array_text(values)) == values


@settings(max_examples=100, deadline=None)
@given(st.lists(st.none() | st.floats(), max_size=8))
def test_floats_read_back_as_themselves(values):
    back = _read_back("SELECT %s::float8[]", array_text(values))
    assert len(back) == len(values)
    for got, sent in zip(back, values, strict=True):
        assert (
            (got is None and sent is None) or got == sent or (math.isnan(got) and math.isnan(sent))
        )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.none() | MOMENTS, max_size=8))
def test_aware_datetimes_read_back_as_the_same_moments(values):
    back = _read_back("SELECT %s::timestamptz[]", array_text(values))
    assert back == values  # aware datetimes compare as moments


# JSON as the alarms store it: its text, cast to jsonb.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(JSON, max_size=5))
def test_json_text_reads_back_as_the_same_documents(values):
    texts = [json.dumps(value) for value in values]
    back = _read_back("SELECT %s::jsonb[]", array_text(texts))
    # The same documents as each text cast alone (jsonb writes numbers in its own way);
    # Django's connection loads jsonb as its text, for JSONField to decode.
    alone = [_read_back("SELECT %s::jsonb", text) for text in texts]
    assert back == alone
    assert [json.loads(text) for text in back] == [json.loads(text) for text in alone]


def test_a_naive_datetime_or_an_unknown_type_is_refused():
    with pytest.raises(ValueError, match="naive"):
        array_text([datetime(2026, 1, 1)])
    with pytest.raises(TypeError, match="bytes"):
        array_text([b"x"])
    assert array_text([datetime(2026, 1, 1, tzinfo=UTC)]) == '{"2026-01-01T00:00:00+00:00"}'
