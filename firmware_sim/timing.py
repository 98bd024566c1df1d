"""Wait on the event loop in ways that can be cut short: futures and alarms."""

from __future__ import annotations

import asyncio


def resolve(future: asyncio.Future[None]) -> None:
    """Complete `future` unless it is already done (woken twice, or cancelled)."""
    if not future.done():
        future.set_result(None)


class Alarm:
    """A sleep until a loop time that ring() cuts short."""

    __slots__ = ("_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None

    async def sleep_until(self, deadline: float) -> None:
        """Wait until `deadline` (loop time) or ring(), whichever comes first."""
        # Not asyncio.sleep: that one ends early only by cancelling the whole task.
        waiter = self._loop.create_future()
        self._waiter = waiter
        handle = self._loop.call_at(deadline, resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    def ring(self) -> None:
        """End the current sleep now, if there is one."""
        if self._waiter is not None:
            resolve(self._waiter)
