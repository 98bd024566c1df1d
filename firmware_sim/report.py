"""Show a fleet's live rates on stderr: a redrawn line on a terminal, sparse lines otherwise."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TextIO

from firmware_sim.stats import FleetStats

REPORT_INTERVAL_S = 1.0
PLAIN_REPORT_INTERVAL_S = 5.0  # when stderr is a file or pipe, print at most this often
CLEAR_LINE = "\r\x1b[K"


def format_rates(stats: FleetStats, rate: float) -> str:
    """Return one status line: connected devices, messages/s, totals; buffering if any."""
    line = (
        f"devices {stats.connected}/{stats.devices} connected | {rate:.1f} msg/s"
        f" | {stats.sent} sent | {stats.errors} errors"
    )
    # Shown only once it happens: readings wait in the devices' buffers while the broker
    # is away (one or two are normal in flight, hence the threshold of one per device).
    if stats.buffered > stats.devices or stats.dropped:
        line += f" | {stats.buffered} buffered | {stats.dropped} dropped"
    return line


class RateReporter:
    """Sample the counters about once a second and write the status line."""

    def __init__(
        self, stats: FleetStats, stream: TextIO, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stats = stats
        self._stream = stream
        self._clock = clock
        self.is_tty = stream.isatty()
        self._last_sent = stats.sent
        self._started_at = self._last_at = clock()
        self._last_plain_at = self._last_at
        self._rate = 0.0
        self._drawn = False

    async def run(self) -> None:
        """Write the line every REPORT_INTERVAL_S until cancelled."""
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            self.tick()

    def tick(self) -> None:
        """Measure the rate over the last interval and write the line if it is due."""
        now = self._clock()
        elapsed = now - self._last_at
        if elapsed > 0:
            self._rate = (self._stats.sent - self._last_sent) / elapsed
        self._last_sent, self._last_at = self._stats.sent, now
        line = format_rates(self._stats, self._rate)
        if self.is_tty:
            self._write(CLEAR_LINE + line)
            self._drawn = True
        elif now - self._last_plain_at >= PLAIN_REPORT_INTERVAL_S:
            self._last_plain_at = now
            self._write(line + "\n")

    def finish(self) -> None:
        """Write the totals of the whole run on a line of their own."""
        elapsed = self._clock() - self._started_at
        average = self._stats.sent / elapsed if elapsed > 0 else 0.0
        prefix = CLEAR_LINE if self._drawn else ""
        dropped = f", {self._stats.dropped} readings dropped" if self._stats.dropped else ""
        self._write(
            f"{prefix}stopped: {self._stats.sent} sent in {elapsed:.1f} s"
            f" ({average:.1f} msg/s), {self._stats.errors} errors{dropped}\n"
        )
        self._drawn = False

    def clear(self) -> None:
        """Wipe the status line so a log record can take its place."""
        if self._drawn:
            self._write(CLEAR_LINE)
            self._drawn = False

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or gone: the simulation goes on without its status line


class ReporterLogHandler(logging.StreamHandler[TextIO]):
    """Log to the reporter's stream without garbling its redrawn status line."""

    def __init__(self, reporter: RateReporter, stream: TextIO) -> None:
        super().__init__(stream)
        self._reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        """Clear the status line, then write the record."""
        self._reporter.clear()
        super().emit(record)
