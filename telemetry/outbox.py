"""Per-socket flow control for live frames: a frame budget and a bounded, merging outbox."""

from __future__ import annotations

import time
from collections import OrderedDict

from telemetry.fanout import readings_frame


class FrameBudget:
    """A token bucket: `rate` units (frames, or bytes) per second, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, cost: float = 1) -> bool:
        """Spend `cost` if the budget has it; a cost above the burst waits for a full bucket."""
        self._refill()
        cost = min(cost, self.burst)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def wait(self, cost: float = 1) -> float:
        """Return the seconds until `cost` can be spent."""
        self._refill()
        return max(0.0, (min(cost, self.burst) - self.tokens) / self.rate)


class Outbox:
    """Readings waiting for a socket's budget: merged per device, oldest dropped past a bound.

    Each entry is a device's JSON-rendered readings (telemetry.fanout, the text
    between a list's brackets) with their count, so merging is joining text, never
    re-encoding.
    """

    def __init__(self, max_readings: int) -> None:
        self.max_readings = max_readings
        self.readings = 0
        self.dropped = 0
        self._devices: OrderedDict[str, list[tuple[str, int]]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._devices)

    def add(self, uid: str, part: str, count: int) -> None:
        """Queue a device's readings behind what it already has waiting."""
        self._devices.setdefault(uid, []).append((part, count))
        self.readings += count
        while self.readings > self.max_readings and self._devices:
            oldest_uid, parts = next(iter(self._devices.items()))
            _, dropped = parts.pop(0)
            self.readings -= dropped
            self.dropped += dropped
            if not parts:
                del self._devices[oldest_uid]

    def pop(self) -> str:
        """Return the frame of the device waiting longest, all its readings merged."""
        uid, parts = self._devices.popitem(last=False)
        self.readings -= sum(count for _, count in parts)
        return readings_frame(uid, (part for part, _ in parts))
