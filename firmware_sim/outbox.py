"""Hold a device's readings until the broker has them: bounded, oldest first."""

from __future__ import annotations

import asyncio
from collections import deque

from firmware_sim.stats import FleetStats
from firmware_sim.timing import resolve


class Outbox:
    """Readings waiting to be published, oldest first; when it is full the oldest is dropped."""

    __slots__ = ("_items", "_limit", "_loop", "_stats", "_waiter")

    def __init__(self, limit: int, stats: FleetStats) -> None:
        if limit < 1:
            raise ValueError(f"an outbox holds at least one reading, not {limit}")
        self._items: deque[bytes] = deque()
        self._limit = limit
        self._stats = stats
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, payload: bytes) -> None:
        """Add the newest reading, dropping the oldest if full, and wake the sender."""
        items = self._items
        if len(items) >= self._limit:
            items.popleft()
            self._stats.dropped += 1
        else:
            self._stats.buffered += 1
        items.append(payload)
        if self._waiter is not None:
            resolve(self._waiter)

    def take(self) -> bytes:
        """Remove and return the oldest reading; the outbox must not be empty."""
        self._stats.buffered -= 1
        return self._items.popleft()

    def put_back(self, payload: bytes) -> None:
        """Return a reading whose publish failed to the front: it goes out first next time."""
        if len(self._items) >= self._limit:
            self._stats.dropped += 1  # it is the oldest of them all, so it is the one to drop
            return
        self._items.appendleft(payload)
        self._stats.buffered += 1

    def ready(self) -> asyncio.Future[None]:
        """Return a future that completes at the next put() or interrupt()."""
        # A plain future rather than a coroutine or an Event: this is on every message's path.
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = self._loop.create_future()
        return waiter

    def interrupt(self) -> None:
        """Wake whoever waits for a reading, so that it can notice a stop or a reboot."""
        if self._waiter is not None:
            resolve(self._waiter)
