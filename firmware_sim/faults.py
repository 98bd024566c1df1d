"""Faults simulated devices can be told to have, on a cycle (`--fault`); pure, no I/O.

A fault is written KIND:COUNT[:EVERY[:FOR]]: COUNT devices misbehave for FOR
seconds in every EVERY seconds (EVERY 60 by default, FOR a third of EVERY), the
first time LEAD_S seconds after the fleet starts, so a demo shows it within its
first minute.
Devices are taken in fleet order, each fault after the devices of the ones
named before it. Kinds:

- drift-high, drift-low: the temperature drifts DRIFT_C above (below) its
  normal level over RAMP_S seconds, stays there, and drifts back over RAMP_S
  seconds once the fault ends.
- silent: the device sends no telemetry (it stays connected and online).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DRIFT_HIGH = "drift-high"
DRIFT_LOW = "drift-low"
SILENT = "silent"
KINDS = (DRIFT_HIGH, DRIFT_LOW, SILENT)
DEFAULT_EVERY_S = 60.0
# The first fault window opens this long after the fleet starts: readings flow first.
LEAD_S = 10.0
DRIFT_C = 15.0
RAMP_S = 4.0
SYNTAX = "KIND:COUNT[:EVERY[:FOR]], KIND one of " + ", ".join(KINDS)


class FaultError(ValueError):
    """Raised for a fault that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One `--fault`: what goes wrong, on how many devices, how often and for how long."""

    kind: str
    count: int
    every: float = DEFAULT_EVERY_S
    duration: float = DEFAULT_EVERY_S / 3

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultError(f"unknown fault {self.kind!r}: use {SYNTAX}")
        if self.count < 1:
            raise FaultError(f"{self.kind}: COUNT must be at least 1, not {self.count}")
        if not (math.isfinite(self.every) and self.every > 0):
            raise FaultError(f"{self.kind}: EVERY must be a positive number of seconds")
        if not (math.isfinite(self.duration) and 0 < self.duration < self.every):
            raise FaultError(
                f"{self.kind}: FOR must be a positive number of seconds, less than EVERY "
                f"({self.every:g})"
            )

    def __str__(self) -> str:
        return f"{self.kind}:{self.count}:{self.every:g}:{self.duration:g}"


def parse_fault(text: str) -> FaultSpec:
    """Parse KIND:COUNT[:EVERY[:FOR]]; raise FaultError saying what is wrong."""
    parts = text.strip().split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise FaultError(f"fault {text!r} is not {SYNTAX}")
    kind, count_text, *times = parts
    try:
        count = int(count_text)
    except ValueError:
        raise FaultError(f"fault {text!r}: COUNT {count_text!r} is not a whole number") from None
    try:
        seconds = [float(value) for value in times]
    except ValueError:
        raise FaultError(f"fault {text!r}: EVERY and FOR are numbers of seconds") from None
    every = seconds[0] if seconds else DEFAULT_EVERY_S
    duration = seconds[1] if len(seconds) > 1 else every / 3
    return FaultSpec(kind, count, every, duration)


def faults_assign(specs: Sequence[FaultSpec], uids: Sequence[str]) -> dict[str, FaultSpec]:
    """Give each fault its devices, in fleet order; raise FaultError when they do not suffice."""
    wanted = sum(spec.count for spec in specs)
    if wanted > len(uids):
        raise FaultError(f"the faults need {wanted} devices; the fleet has {len(uids)}")
    assigned: dict[str, FaultSpec] = {}
    taken = iter(uids)
    for spec in specs:
        for _ in range(spec.count):
            assigned[next(taken)] = spec
    return assigned


class DeviceFault:
    """One device's fault, on the cycle that starts at the fleet's start (epoch seconds)."""

    __slots__ = ("spec", "start")

    def __init__(self, spec: FaultSpec, start: float) -> None:
        self.spec = spec
        self.start = start

    def position(self, at: float) -> float | None:
        """Return the seconds since the latest fault window opened, or None before the first."""
        elapsed = at - self.start - LEAD_S
        if elapsed < 0:
            return None
        return elapsed % self.spec.every

    def active(self, at: float) -> bool:
        """Tell whether the fault holds at epoch seconds `at`."""
        position = self.position(at)
        return position is not None and position < self.spec.duration

    def drift(self, at: float) -> float:
        """Return how far (°C, ≥ 0) the temperature has drifted at epoch seconds `at`."""
        position = self.position(at)
        if position is None:
            return 0.0
        duration = self.spec.duration
        if position < duration:
            return DRIFT_C * min(1.0, position / RAMP_S)
        reached = min(1.0, duration / RAMP_S)
        return DRIFT_C * reached * max(0.0, 1.0 - (position - duration) / RAMP_S)

    def apply(self, values: dict[str, float], at: float) -> dict[str, float] | None:
        """Return the reading as the faulty device sends it at `at`, or None for no reading."""
        kind = self.spec.kind
        if kind == SILENT:
            return None if self.active(at) else values
        offset = self.drift(at)
        if not offset or "temperature" not in values:
            return values
        sign = 1.0 if kind == DRIFT_HIGH else -1.0
        return {**values, "temperature": round(values["temperature"] + sign * offset, 2)}
