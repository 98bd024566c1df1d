"""Device attributes as values: RFC 7396 merge patches and the limits an attribute object keeps.

Pure functions, no I/O: the services (devices.attribute_services) load and store,
the REST view, the socket and the bridge's events all check through here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import isfinite
from typing import Any, Final

import orjson

# Attribute names follow the metric name rule (CONTRACT §2).
NAME_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"
_name_ok: Final = re.compile(NAME_PATTERN[1:-1]).fullmatch
# How deep a value may nest: keeps the recursive merge and orjson far from their limits.
MAX_DEPTH: Final = 16

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class AttributeLimits:
    """Bounds of one side (desired or reported) of a device's attributes."""

    max_keys: int = 100
    max_bytes: int = 16_384


class AttributesInvalid(ValueError):
    """A patch or its result breaks a rule; `reason` is a short code, the message says which."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def merge_patch(target: Any, patch: Any) -> Any:
    """Return `target` with the JSON merge patch `patch` applied (RFC 7396 §2); inputs untouched.

    A patch that is not an object replaces the target; in an object patch a null
    removes its key and an object merges into the target's value recursively.
    """
    if not isinstance(patch, dict):
        return patch
    result: JsonObject = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def patch_check(patch: Any, *, limits: AttributeLimits) -> JsonObject:
    """Return a patch that is a JSON object with valid names, or raise AttributesInvalid."""
    if not isinstance(patch, dict):
        raise AttributesInvalid("invalid_shape", "attributes must be a JSON object")
    _names_check(patch)
    if len(patch) > limits.max_keys:
        raise AttributesInvalid(
            "too_many_attributes",
            f"{len(patch)} keys, more than the limit of {limits.max_keys} "
            "(HUB_ATTRIBUTES_MAX_KEYS)",
        )
    return patch


def attributes_check(values: JsonObject, *, limits: AttributeLimits) -> JsonObject:
    """Return a merged attribute object within the limits, or raise AttributesInvalid."""
    if len(values) > limits.max_keys:
        raise AttributesInvalid(
            "too_many_attributes",
            f"{len(values)} keys after the merge, more than the limit of {limits.max_keys} "
            "(HUB_ATTRIBUTES_MAX_KEYS)",
        )
    size = len(orjson.dumps(values))
    if size > limits.max_bytes:
        raise AttributesInvalid(
            "attributes_too_large",
            f"{size} bytes of JSON after the merge, more than the limit of {limits.max_bytes} "
            "(HUB_ATTRIBUTES_MAX_BYTES)",
        )
    return values


def _names_check(patch: JsonObject) -> None:
    for name in patch:
        if _name_ok(name) is None:
            shown = name if len(name) <= 64 else f"{name[:64]}..."
            raise AttributesInvalid(
                "invalid_attribute", f"attribute name {shown!r} does not match {NAME_PATTERN}"
            )
    problem = _value_problem(patch, 0)
    if problem is not None:
        raise AttributesInvalid("invalid_value", problem)


def _value_problem(value: Any, depth: int) -> str | None:
    """Say why a value cannot be stored (too deep, NUL, not finite), or None."""
    if depth > MAX_DEPTH:
        return f"values nest more than {MAX_DEPTH} deep"
    if isinstance(value, str):
        return "values must not contain NUL characters (\\u0000)" if "\x00" in value else None
    if isinstance(value, float) and not isfinite(value):
        return "numbers must be finite"
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return "keys must not contain NUL characters (\\u0000)"
            problem = _value_problem(item, depth + 1)
            if problem is not None:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = _value_problem(item, depth + 1)
            if problem is not None:
                return problem
    return None


def pending_keys(desired: JsonObject, reported: JsonObject) -> list[str]:
    """Return the desired keys whose reported value differs: changes not applied yet."""
    return sorted(key for key, value in desired.items() if reported.get(key) != value)
