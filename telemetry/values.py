"""Convert between wire values and the stored (value, text, kind) columns; moments (core)."""

from __future__ import annotations

from core.moments import EPOCH, datetime_to_ms, ms_to_datetime
from telemetry.codec import format_ts
from telemetry.models import ValueKind

__all__ = [
    "EPOCH",
    "WireValue",
    "columns_to_value",
    "datetime_to_ms",
    "format_ts",
    "ms_to_datetime",
    "value_to_columns",
]

WireValue = float | int | bool | str


def value_to_columns(value: WireValue) -> tuple[float | None, str | None, int]:
    """Split a wire value into the (value, text, kind) columns of a reading."""
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return (1.0 if value else 0.0), None, ValueKind.BOOL
    if isinstance(value, int):
        return float(value), None, ValueKind.INT
    if isinstance(value, float):
        return value, None, ValueKind.FLOAT
    return None, value, ValueKind.STR


def columns_to_value(value: float | None, text: str | None, kind: int) -> WireValue:
    """Rebuild the wire value from stored columns."""
    if kind == ValueKind.STR:
        return text or ""
    assert value is not None
    if kind == ValueKind.BOOL:
        return value != 0.0
    if kind == ValueKind.INT:
        return int(value)
    return value
