"""What every phase of an ingest row drives: the row, the publisher, the plan, the counters.

The phases (bench/rows/runner.py: prime, ladder, latency, count;
bench/rows/burst.py; bench/rows/overload.py) all take a RowDriver; it knows
nothing of them, so they import it and never each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from bench.load.feed import Feed
from bench.rows.base import Row
from bench.support.meter import Meter
from bench.support.procs import Child

logger = logging.getLogger("bench")

QUIET_S = 1.5
STALL_S = 30.0


class RowFailed(RuntimeError):
    """The row cannot go on: a process died or the consumer stalled."""


@dataclass
class Plan:
    """How long and at which rates to measure."""

    window_s: float
    warmup_s: float
    ladder: list[float]
    start: float
    max_steps: int
    refine: int
    latency_window_s: float
    drain_messages: int
    rates: list[float] | None = None
    tolerance: float = 0.02
    sample_s: float = 0.25
    profile_s: float = 0.0
    # Profile at least at this rate (embedded: issue 3's target), where a row falls behind.
    profile_rate: float = 0.0
    # Overload (hub): factor x the sustained rate for overload_s, then catch_up_s at most.
    overload_s: float = 0.0
    overload_factor: float = 2.0
    catch_up_s: float = 120.0
    # No new ladder step starts after this share of the row's time budget.
    budget_s: float = 300.0
    ladder_share: float = 0.65


class RowDriver:
    """One row with its publisher and meter, its counters' base, and the record of its run."""

    def __init__(self, row: Row, feed: Feed, broker: Child | None, plan: Plan) -> None:
        self.row = row
        self.feed = feed
        self.plan = plan
        self.meter = Meter(row, broker, feed.child)
        self.base_published = 0
        self.base_consumed = 0.0
        self.base_stored = 0
        self.result: dict[str, Any] = {"row": row.name, "steps": [], "errors": []}
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        """Log one progress line for this row."""
        logger.info("[%s] %s", self.row.name, text)

    async def sample(self) -> tuple[float, int, float]:
        """Return (time, published, consumed) relative to the row's base."""
        self.check()
        consumed = await self.row.consumed()
        return (
            time.time(),
            self.feed.acked - self.base_published,
            consumed - self.base_consumed,
        )

    def check(self) -> None:
        """Fail the row if one of its processes died."""
        self.feed.check()
        for name, child in self.meter.children().items():
            if not child.alive:
                raise RowFailed(f"{name} exited with {child.process.returncode}")

    async def quiet(self) -> None:
        """Wait until the consumed count has not moved for QUIET_S."""
        last, since = await self.row.consumed(), time.monotonic()
        while time.monotonic() - since < QUIET_S:
            await asyncio.sleep(0.1)
            now = await self.row.consumed()
            if now != last:
                last, since = now, time.monotonic()

    async def drain(self) -> float:
        """Wait until everything published is consumed; return how long it took."""
        started = time.monotonic()
        _, published, consumed = await self.sample()
        progress_at, best = time.monotonic(), consumed
        # Settled: the publisher's last report counts every message it wrote as acknowledged.
        while consumed < published or not self.feed.settled:
            await asyncio.sleep(0.1)
            _, published, consumed = await self.sample()
            if consumed > best:
                progress_at, best = time.monotonic(), consumed
            elif time.monotonic() - progress_at > STALL_S:
                raise RowFailed(
                    f"stalled with {published - consumed:.0f} messages unconsumed for {STALL_S} s"
                )
        return time.monotonic() - started

    async def sleep_checked(self, seconds: float) -> None:
        """Sleep, checking the processes every quarter second."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.check()
            await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
