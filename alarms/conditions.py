"""Pure evaluation of one rule on one device's readings: no I/O, so it is tested by the thousand.

Definitions (README "Alarms"):

- above: holds when value > threshold; an active alarm clears at value <= clear
  (clear defaults to the threshold, so between clear and threshold it neither
  holds nor clears: hysteresis). below mirrors it (holds below, clears at >= clear).
- outside: holds when value < low or value > high; clears when back in [low, high].
- equals: holds when the reading equals `value` with its JSON type: booleans
  equal only booleans, strings only the same string, numbers numerically
  (1 == 1.0); clears on any other reading.
- above/below/outside look at numbers only; booleans and strings are ignored by
  them, as numbers and strings are by an equals on a boolean, and so on.
- for: the condition held on every reading from the first one that met it
  (device time t0) to a reading at t0 + for or later; that reading raises.
  With for = 0 the first reading that meets the condition raises.
- Readings are taken in device-time order; one older than the newest already
  evaluated for this rule and device changes nothing.
- While active, a reading that meets the condition again after one that did not
  updates the alarm's `value`; `peak` is the most extreme value while active
  (above: highest, below: lowest, outside: farthest outside the band, equals:
  the value). A cleared alarm stays cleared; the next raise is a new alarm.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Value = float | int | bool | str

RAISED = "raised"
UPDATED = "updated"
CLEARED = "cleared"
ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True, slots=True)
class Spec:
    """The parts of a rule that evaluation needs."""

    condition: str
    threshold: float | None = None
    low: float | None = None
    high: float | None = None
    value: Any = None
    for_ms: int = 0
    clear: float | None = None


@dataclass(slots=True)
class Track:
    """The state of one (rule, device), as stored between batches."""

    last_ts: int | None = None
    pending_since: int | None = None
    holding: bool = False
    active: bool = False
    value: Any = None
    peak: Any = None


def _number(value: Value) -> float | None:
    if isinstance(value, bool | str):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def fits(spec: Spec, value: Value) -> bool:
    """Tell whether a reading's type is one the rule looks at."""
    if spec.condition == "equals":
        expected = spec.value
        if isinstance(expected, bool) or isinstance(value, bool):
            return isinstance(expected, bool) and isinstance(value, bool)
        if isinstance(expected, str) or isinstance(value, str):
            return isinstance(expected, str) and isinstance(value, str)
        return True
    return _number(value) is not None


def holds(spec: Spec, value: Value) -> bool:
    """Tell whether a reading (of a fitting type) meets the rule's condition."""
    if spec.condition == "equals":
        return bool(value == spec.value)
    number = float(value)
    if spec.condition == "above":
        return number > (spec.threshold or 0.0)
    if spec.condition == "below":
        return number < (spec.threshold or 0.0)
    if spec.condition == "outside":
        return number < (spec.low or 0.0) or number > (spec.high or 0.0)
    return False


def meeting(spec: Spec) -> Callable[[Value], bool]:
    """Return a test of whether a reading of any type fits the rule and meets its condition.

    The same as `fits(spec, value) and holds(spec, value)`, with a shortcut for the
    usual reading, a float, under above/below: one comparison (a NaN or an infinity
    fails it, as they fail `fits`).
    """
    condition, threshold = spec.condition, spec.threshold or 0.0

    def slow(value: Value) -> bool:
        return fits(spec, value) and holds(spec, value)

    if condition == "above":

        def above(value: Value) -> bool:
            if type(value) is float:
                return threshold < value < math.inf
            return slow(value)

        return above
    if condition == "below":

        def below(value: Value) -> bool:
            if type(value) is float:
                return -math.inf < value < threshold
            return slow(value)

        return below
    return slow


def clears(spec: Spec, value: Value) -> bool:
    """Tell whether a reading (of a fitting type) clears an active alarm."""
    if spec.condition in ("above", "below"):
        level = spec.clear if spec.clear is not None else spec.threshold
        number = float(value)
        if spec.condition == "above":
            return number <= (level or 0.0)
        return number >= (level or 0.0)
    return not holds(spec, value)


def _distance(spec: Spec, value: Value) -> float:
    number = float(value)
    if spec.condition == "above":
        return number
    if spec.condition == "below":
        return -number
    if spec.condition == "outside":
        return max((spec.low or 0.0) - number, number - (spec.high or 0.0))
    return 0.0


def more_extreme(spec: Spec, value: Value, peak: Any) -> bool:
    """Tell whether `value` beats the alarm's peak for this condition."""
    if peak is None:
        return True
    if spec.condition == "equals":
        return False
    return _distance(spec, value) > _distance(spec, peak)


def step(spec: Spec, track: Track, ts: int, value: Value) -> str | None:
    """Evaluate one reading; update `track`; return the change it made, if any."""
    if track.last_ts is not None and ts < track.last_ts:
        return None
    if not fits(spec, value):
        return None
    track.last_ts = ts
    meets = holds(spec, value)
    was_holding, track.holding = track.holding, meets
    if track.active:
        if clears(spec, value):
            track.active = False
            track.pending_since = None
            track.value = track.peak = None
            return CLEARED
        if not meets:
            return None
        change = None
        if not was_holding:
            track.value = value
            change = UPDATED
        if more_extreme(spec, value, track.peak):
            track.peak = value
            change = UPDATED
        return change
    if not meets:
        track.pending_since = None
        return None
    if track.pending_since is None:
        track.pending_since = ts
    if ts - track.pending_since >= spec.for_ms:
        track.active = True
        track.pending_since = None
        track.value = track.peak = value
        return RAISED
    return None
