"""Resident memory of named processes over time: sampled, summarised, judged flat or growing.

The burst and overload phases run one `RssSampler` in the background. Each
sample reads VmRSS from /proc (a few µs per process), so sampling every
quarter second costs the bench next to nothing. Processes are looked up by
name at every sample, so a bridge restarted on the same session is followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from bench.support.procs import Child
from bench.support.stats import slope

MB = 2**20
# Growth of a process's RSS, first 10 s against last 10 s of a window, that is flagged.
GROWTH_FLAG_MB = 20.0
EDGE_S = 10.0


def current_rss(pid: int) -> int | None:
    """Return a process's resident set size in bytes now (VmRSS), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class RssSampler:
    """Samples the RSS of some of a row's processes every `interval_s` until stopped."""

    def __init__(
        self, children: Callable[[], dict[str, Child]], names: list[str], interval_s: float
    ) -> None:
        self.children = children
        self.names = names
        self.interval_s = interval_s
        # (wall time, {name: bytes}); a process that is gone is left out of a sample.
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        """Take one sample now."""
        found = self.children()
        values = {}
        for name in self.names:
            child = found.get(name)
            rss = current_rss(child.ps.pid) if child is not None else None
            if rss is not None:
                values[name] = rss
        self.samples.append((time.monotonic(), values))

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)

    def start(self) -> RssSampler:
        """Start sampling in the background."""
        self._task = asyncio.create_task(self._run(), name="rss-sampler")
        return self

    async def stop(self) -> None:
        """Stop sampling, with one last sample."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sample()

    def series(
        self, name: str, since: float = 0.0, until: float = float("inf")
    ) -> list[tuple[float, float]]:
        """Return (seconds, MB) points of one process between two monotonic times."""
        return [
            (t, values[name] / MB)
            for t, values in self.samples
            if name in values and since <= t <= until
        ]

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict[str, Any]:
        """Return start/end/max MB, the slope over the second half and the edge growth."""
        out: dict[str, Any] = {}
        for name in self.names:
            points = self.series(name, since, until)
            if not points:
                continue
            t0, t1 = points[0][0], points[-1][0]
            middle = (t0 + t1) / 2
            second_half = [(t - t0, mb) for t, mb in points if t >= middle]
            head = [mb for t, mb in points if t <= t0 + EDGE_S]
            tail = [mb for t, mb in points if t >= t1 - EDGE_S]
            growth = sum(tail) / len(tail) - sum(head) / len(head)
            out[name] = {
                "start_mb": points[0][1],
                "end_mb": points[-1][1],
                "max_mb": max(mb for _, mb in points),
                "slope_mb_per_min_second_half": slope(second_half) * 60,
                "growth_first_last_10s_mb": growth,
                "grows": growth > GROWTH_FLAG_MB,
                "samples": len(points),
                "points": [(round(t - t0, 2), round(mb, 1)) for t, mb in points],
            }
        return out
