"""The text form of array parameters reads back as the same values in PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from core.pgarrays import int_array, text_array

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
