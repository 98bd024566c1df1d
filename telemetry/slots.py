"""Bound how many history computations (series, CSV export chunks) run at once in a process.

They are CPU-bound Python on the web server's threads: eight maximal series
requests at once left `/healthz` waiting 400 ms for the GIL, two at a time 50 ms
(bench/hardening.py). The rest wait their turn.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Final, TypeVar

from rest_framework.exceptions import APIException

from core.conf import hub_settings

T = TypeVar("T")

# A series request waits this long for a slot, then gets a 503 naming the limit.
SERIES_WAIT_SECONDS: Final = 30.0

# What the 503 tells the client to wait before retrying.
BUSY_RETRY_SECONDS: Final = 1

_lock = threading.Lock()
_slots: tuple[int, threading.BoundedSemaphore] | None = None


class HistoryBusy(APIException):
    """503: every history slot stayed taken while the request waited."""

    status_code = 503
    default_code = "busy"

    def __init__(self, limit: int, wait: int) -> None:
        super().__init__(
            f"the hub is busy: at most {limit} history computations at once "
            f"(HUB_HISTORY_CONCURRENCY); retry in {wait} s"
        )
        # DRF's exception handler turns `wait` into a Retry-After header.
        self.wait = wait


def _semaphore() -> tuple[int, threading.BoundedSemaphore]:
    """Return the process's slots, sized by HUB_HISTORY_CONCURRENCY (resized if it changed)."""
    global _slots
    size = hub_settings.HISTORY_CONCURRENCY
    with _lock:
        if _slots is None or _slots[0] != size:
            _slots = (size, threading.BoundedSemaphore(size))
        return _slots


@contextmanager
def history_slot(*, wait_s: float | None) -> Iterator[None]:
    """Hold one history slot for the block; past `wait_s` (None: forever) raise HistoryBusy."""
    size, slots = _semaphore()
    if not slots.acquire(timeout=wait_s):
        raise HistoryBusy(size, BUSY_RETRY_SECONDS)
    try:
        yield
    finally:
        slots.release()


def series_slot() -> AbstractContextManager[None]:
    """Hold a history slot for a series request, waiting at most SERIES_WAIT_SECONDS."""
    return history_slot(wait_s=SERIES_WAIT_SECONDS)


def in_history_slots(items: Iterator[T]) -> Generator[T, None, None]:
    """Yield from `items`, computing each one inside a history slot, never holding it between.

    For streamed answers: a slow reader holds no slot while the server waits on it.
    """
    try:
        while True:
            with history_slot(wait_s=None):
                try:
                    item = next(items)
                except StopIteration:
                    return
            yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
