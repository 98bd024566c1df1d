"""RFC 7396 merge patches and the attribute limits: pure functions, examples and properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.attributes import (
    AttributeLimits,
    AttributesInvalid,
    attributes_check,
    merge_patch,
    patch_check,
    pending_keys,
)

# RFC 7396 appendix A, every example.
RFC_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_EXAMPLES)
def test_merge_patch_gives_the_rfc_7396_examples(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_merge_patch_leaves_its_inputs_alone() -> None:
    target = {"a": {"b": 1}}
    patch = {"a": {"c": 2}}
    assert merge_patch(target, patch) == {"a": {"b": 1, "c": 2}}
    assert target == {"a": {"b": 1}}
    assert patch == {"a": {"c": 2}}


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=3), json_values, max_size=5)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    return value


@given(objects, objects)
def test_a_patch_applied_twice_changes_nothing_more(target: Any, patch: Any) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


@given(objects, objects)
def test_every_patched_key_takes_the_patch_value_and_others_stay(target: Any, patch: Any) -> None:
    merged = merge_patch(target, patch)
    for key, value in patch.items():
        if value is None:
            assert key not in merged
        elif isinstance(value, dict):
            assert merged[key] == merge_patch(target.get(key), value)
        else:
            assert merged[key] == value
    for key in set(target) - set(patch):
        assert merged[key] == target[key]


@given(objects)
def test_a_null_free_object_as_a_patch_to_nothing_is_itself(value: Any) -> None:
    assert merge_patch({}, value) == _without_nulls(value)


LIMITS = AttributeLimits(max_keys=3, max_bytes=64)


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ([1], "invalid_shape"),
        ("x", "invalid_shape"),
        ({"bad name": 1}, "invalid_attribute"),
        ({"": 1}, "invalid_attribute"),
        ({"a": "nul\x00"}, "invalid_value"),
        ({"a": {"k\x00": 1}}, "invalid_value"),
        ({"a": 1, "b": 2, "c": 3, "d": 4}, "too_many_attributes"),
    ],
)
def test_patch_check_refuses_with_a_named_reason(patch: Any, reason: str) -> None:
    with pytest.raises(AttributesInvalid) as raised:
        patch_check(patch, limits=LIMITS)
    assert raised.value.reason == reason


def test_patch_check_refuses_values_nested_too_deep() -> None:
    deep: Any = 1
    for _ in range(40):
        deep = {"x": deep}
    with pytest.raises(AttributesInvalid, match="nest"):
        patch_check({"a": deep}, limits=LIMITS)


def test_attributes_check_counts_keys_and_bytes_after_the_merge() -> None:
    assert attributes_check({"a": 1, "b": 2, "c": 3}, limits=LIMITS)
    with pytest.raises(AttributesInvalid, match="HUB_ATTRIBUTES_MAX_KEYS"):
        attributes_check({"a": 1, "b": 2, "c": 3, "d": 4}, limits=LIMITS)
    with pytest.raises(AttributesInvalid, match="HUB_ATTRIBUTES_MAX_BYTES"):
        attributes_check({"a": "x" * 80}, limits=LIMITS)


def test_pending_keys_are_desired_keys_the_device_reports_otherwise() -> None:
    desired = {"interval": 5, "setpoint": 21.5, "mode": "eco"}
    reported = {"interval": 5, "setpoint": 20, "firmware": "1.0"}
    assert pending_keys(desired, reported) == ["mode", "setpoint"]
