"""What an ingest row offers to the runner, and what every row of a run shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.support.procs import Child


@dataclass
class RowContext:
    """Shared by the rows of one run: options, folders, the databases and the seed."""

    devices: int
    clients: int
    workdir: Path
    run_id: str
    uid_prefix: str = "bench-"
    extra: dict[str, Any] = field(default_factory=dict)


class Row(ABC):
    """One configuration under test, consuming the private broker's device telemetry."""

    name = ""
    # What is counted as consumed, for the table's footnotes.
    counted = ""
    # The broker is one of the row's own processes (hub serve): its acknowledgements
    # falling short of the offered rate is the row falling behind.
    broker_inside = False
    # Processes whose RSS the burst and overload phases sample.
    memory_watch: tuple[str, ...] = ()

    def __init__(self, context: RowContext, broker: Child | None, broker_port: int) -> None:
        self.context = context
        self.broker = broker
        self.broker_port = broker_port
        self.notes: list[str] = []

    @abstractmethod
    async def start(self) -> None:
        """Start the consumer side; the broker is up, the publisher not yet."""

    @abstractmethod
    async def pause(self) -> None:
        """Stop taking messages, keeping the MQTT session so the broker queues them."""

    @abstractmethod
    async def resume(self) -> None:
        """Take messages again (from the queued backlog first)."""

    @abstractmethod
    async def consumed(self) -> float:
        """Return the messages consumed so far (stored, for rows with a database)."""

    @abstractmethod
    def measured(self) -> dict[str, Child]:
        """Return this row's own processes by name (broker and publisher are added)."""

    def extra_pids(self) -> dict[str, list[int]]:
        """Return processes shared with others (database backends, Redis) to measure CPU of."""
        return {}

    async def window_begin(self, *, latency: bool) -> None:  # noqa: B027 - optional hook
        """Reset latency samples at the start of a measured window."""

    async def window_end(self, start_ms: int, end_ms: int) -> dict[str, Any]:
        """Return latency summaries for the window that just ended."""
        return {}

    @abstractmethod
    async def stored_readings(self) -> int:
        """Return the readings stored (or received) so far, counted exactly."""

    def profile_targets(self) -> dict[str, int]:
        """Return the pids py-spy samples at the sustained rate (none: no profile)."""
        return {}

    async def burst_check(self, since_ms: int) -> dict[str, Any]:
        """Return exact counts of the rows stored with a device ts at or after `since_ms`.

        Keys `raw` and `distinct` (readings) are compared with the published count.
        """
        return {}

    async def consistency(self) -> dict[str, Any]:
        """Return extra end-of-row checks (rollup totals, error counts)."""
        return {}

    @abstractmethod
    async def stop(self) -> None:
        """Stop this row's processes and release what it created."""
