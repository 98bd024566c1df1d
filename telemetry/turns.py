"""Batches one worker stores at once write their readings in the order it took them.

With HUB_INGEST_BATCHES_AT_ONCE above one, each batch is stored in its own
transaction on its own connection. Each prepares at once (device lookup, COPY into
its staging table); their store statements then run one after another, in the
order the worker took the batches: a batch's statement starts once the one before
it has ended (or that batch has failed). The statement locks the latest-value row
of every series it adds readings to, until commit, so a later batch with readings
of the same series waits for the earlier one to commit before its own statement
ends: alarm evaluation, after the statement, sees a series' batches in the order
they came, as with one batch at a time.

A batch waits for its turn holding no row lock (it has only read, and filled its own
staging table), so the wait cannot be part of a deadlock; like a lock wait, it
lasts as long as the batch before it takes. Every turn ends: after its statement,
or when its batch ends however it ends (telemetry/ingest.py, _batch_run).
"""

from __future__ import annotations

import threading


class Turns:
    """Hands out turns in the order batches are taken, and tells each when it is its turn."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._issued = 0
        # The first turn not over yet; turns over past it wait in `_over` for it.
        self._current = 0
        self._over: set[int] = set()

    def take(self) -> Turn:
        """Return the next turn (call in the order the batches are taken)."""
        with self._changed:
            number = self._issued
            self._issued += 1
        return Turn(self, number)

    def _wait(self, number: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._current >= number)

    def _end(self, number: int) -> None:
        with self._changed:
            if number < self._current:
                return  # already over
            self._over.add(number)
            while self._current in self._over:
                self._over.discard(self._current)
                self._current += 1
            self._changed.notify_all()


class Turn:
    """One batch's place in its worker's order."""

    __slots__ = ("_number", "_turns")

    def __init__(self, turns: Turns, number: int) -> None:
        self._turns = turns
        self._number = number

    def wait(self) -> None:
        """Block until every earlier turn is over."""
        self._turns._wait(self._number)

    def end(self) -> None:
        """End this turn (again is harmless): the next batch may write its readings."""
        self._turns._end(self._number)
