"""The bridge's batching window: the open batch, and sealed batches until they are stored.

Messages join the open batch, which is sealed when it is full, when its delay
is up and the window has room, or at once when nothing is being stored. Sealed
batches wait for a place among the `batches_in_flight` sent and unconfirmed;
under load the open batch grows meanwhile, which is how the store keeps up
(fewer, larger transactions). No I/O here: the bridge sends, acknowledges and
pauses reading.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import deque
from dataclasses import dataclass, field

from devices.events import DeviceEvent
from telemetry.columns import ReadingColumns


@dataclass(slots=True)
class Batch:
    """Readings on their way to the store, with the MQTT messages they came in."""

    # As columns: the ingest worker's wire form (telemetry/columns.py).
    readings: ReadingColumns = field(default_factory=ReadingColumns)
    # uid -> metric -> unit (SenML): the last unit each metric was given in the batch.
    units: dict[str, dict[str, str]] = field(default_factory=dict)
    # Device events (presence, command replies, commands sent) for the ingest worker.
    events: list[DeviceEvent] = field(default_factory=list)
    # (index of its first reading, topic) of each telemetry message, to report refusals.
    topics: list[tuple[int, str]] = field(default_factory=list)
    mids: list[int] = field(default_factory=list)
    generation: int = 0
    received_ms: int = 0
    sent_at: float | None = None
    attempts: int = 0

    def empty(self) -> bool:
        """Tell whether nothing has joined the batch yet."""
        return not self.readings and not self.events


class BatchWindow:
    """The open batch and the sealed ones, by id, until an ingest worker confirms them."""

    def __init__(
        self,
        *,
        max_readings: int,
        max_delay_s: float,
        in_flight_max: int,
        send_when_idle: bool,
    ) -> None:
        self.max_readings = max_readings
        self.max_delay_s = max_delay_s
        self.in_flight_max = in_flight_max
        self.send_when_idle = send_when_idle
        # The connection's generation, stamped on each batch as it is sealed.
        self.generation = 0
        self.current = Batch()
        self.pending: dict[str, Batch] = {}
        self.waiting: deque[str] = deque()
        self.in_flight: set[str] = set()
        self.pending_readings = 0
        # Set when a sealed batch waits to be sent; when nothing is pending.
        self.sendable = asyncio.Event()
        self.drained = asyncio.Event()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]

    def backlog(self) -> tuple[int, int, int]:
        """Return batches in flight, batches waiting for the window, readings not yet stored."""
        return len(self.in_flight), len(self.waiting), self.pending_readings

    def open(self, received_ms: int) -> Batch:
        """Return the open batch, starting its timer if it was empty."""
        batch = self.current
        if batch.empty():
            batch.received_ms = received_ms
            self._flush_timer = asyncio.get_running_loop().call_later(
                self.max_delay_s, self._on_due
            )
        return batch

    def readings_added(self, count: int) -> None:
        """Count readings that joined the open batch (they are pending until stored)."""
        self.pending_readings += count

    def joined(self, mid: int | None) -> bool:
        """Note a message now in the open batch (its mid, if QoS > 0); return whether it sealed."""
        batch = self.current
        if mid is not None:
            batch.mids.append(mid)
        idle = self.send_when_idle and not self.pending
        if len(batch.readings) >= self.max_readings or idle:
            # Full, or nothing is being stored: send now. Under load, batches in
            # flight let the open one grow, which is how the store keeps up.
            self.seal()
            return True
        return False

    def has_room(self) -> bool:
        """Tell whether a sealed batch could be sent now."""
        return len(self.in_flight) + len(self.waiting) < self.in_flight_max

    def seal(self) -> None:
        """Close the open batch and queue it for sending."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch = self.current
        if batch.empty():
            return
        self.current = Batch()
        batch.generation = self.generation
        batch_id = f"{self._prefix}-{next(self._ids)}"
        self.pending[batch_id] = batch
        self.waiting.append(batch_id)
        self.sendable.set()

    def _on_due(self) -> None:
        self._flush_timer = None
        # With the window full, let the open batch grow: fewer, larger transactions
        # are how the store catches up.
        if self.has_room():
            self.seal()

    def next_to_send(self) -> tuple[str, Batch] | None:
        """Move the next waiting batch in flight, if the window has a place for it."""
        while self.waiting and len(self.in_flight) < self.in_flight_max:
            batch_id = self.waiting.popleft()
            batch = self.pending.get(batch_id)
            if batch is not None:
                self.in_flight.add(batch_id)
                return batch_id, batch
        return None

    def confirmed(self, batch_id: str) -> Batch | None:
        """Take a stored batch out of the window; None for a late reply to one already confirmed."""
        batch = self.pending.pop(batch_id, None)
        if batch is None:
            return None
        self.in_flight.discard(batch_id)
        self.pending_readings -= len(batch.readings)
        return batch

    def after_confirmed(self) -> None:
        """Once a confirmed batch is handled: seal what is due, wake the sender, note a drain."""
        idle = self.send_when_idle and not self.pending
        if idle or (self._flush_timer is None and self.has_room()):
            self.seal()  # the store is idle, or the open batch was due while the window was full
        self.sendable.set()
        if not self.pending:
            self.drained.set()

    def overdue(self, deadline: float) -> list[tuple[str, Batch]]:
        """Return the batches in flight sent before `deadline` (monotonic), to send again."""
        return [
            (batch_id, batch)
            for batch_id in list(self.in_flight)
            if (batch := self.pending[batch_id]).sent_at is not None and batch.sent_at < deadline
        ]
