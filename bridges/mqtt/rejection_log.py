"""Log the bridge's rejections at a bounded rate: a flood of bad messages gives a few lines.

Every rejection is still counted (the bridge's stats, /metrics) and reported to
its device on devices/{uid}/errors; only the log is summarised. The first
rejection of a reason is logged in full; further ones within the interval are
counted, and one summary line per reason and interval says how many there were
and shows the latest.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from telemetry.codec import Rejection


@dataclass(slots=True)
class _Window:
    """A reason's current interval: rejections held back and the latest of them."""

    timer: asyncio.TimerHandle
    suppressed: int = 0
    topic: str = ""
    detail: str = ""


class RejectionLog:
    """At most one line per rejection reason per interval, with the count it stands for."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._windows: dict[str, _Window] = {}

    def add(self, topic: str, rejection: Rejection, count: int = 1) -> None:
        """Log a rejection now, or count it towards its reason's next summary line."""
        window = self._windows.get(rejection.reason)
        if window is None:
            self._logger.info(
                "bridge: rejected from %s: %s: %s", topic, rejection.reason, rejection.detail
            )
            self._open(rejection.reason)
            count -= 1
            if count <= 0:
                return
            window = self._windows[rejection.reason]
        window.suppressed += count
        window.topic, window.detail = topic, rejection.detail

    def close(self) -> None:
        """Write the summaries still held back (the bridge is stopping)."""
        for reason in list(self._windows):
            window = self._windows.pop(reason)
            window.timer.cancel()
            self._summarise(reason, window)

    def _open(self, reason: str) -> None:
        timer = asyncio.get_running_loop().call_later(self._interval_s, self._due, reason)
        self._windows[reason] = _Window(timer)

    def _due(self, reason: str) -> None:
        window = self._windows.pop(reason)
        if window.suppressed:
            self._summarise(reason, window)
            # The flood may go on: keep counting, so it stays at one line per interval.
            self._open(reason)

    def _summarise(self, reason: str, window: _Window) -> None:
        if not window.suppressed:
            return
        self._logger.info(
            "bridge: %d more %s rejections within %g s, not logged one by one; latest from %s: %s",
            window.suppressed,
            reason,
            self._interval_s,
            window.topic,
            window.detail,
        )
