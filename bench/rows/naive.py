"""The naive row: bench/load/naiveconsumer.py in place of the hub's bridge and ingest."""

from __future__ import annotations

from typing import Any

from bench.load.publisher import READINGS_PER_MESSAGE
from bench.rows.djangorow import DjangoRow
from bench.support.procs import PYTHON, Child


class NaiveRow(DjangoRow):
    """bench/load/naiveconsumer.py: one create() per reading and one group_send per message."""

    name = "naive"
    counted = "readings stored as counted by the naive process ÷ 3"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.naive: Child | None = None
        self.offset = 0

    async def start_consumer(self) -> None:
        """Start the naive consumer."""
        await self.resume()

    async def pause(self) -> None:
        """Stop the naive consumer (called only when it has nothing left to store)."""
        assert self.naive is not None
        await self.naive.stop()
        self.offset += int(self.naive.last.get("stored", 0))
        self.naive.last["stored"] = 0  # counted in the offset now

    async def resume(self) -> None:
        """Start a naive consumer on the same session."""
        client_id = f"bench-{self.context.run_id}-naive"
        naive = await self.start_process(
            "naive",
            [PYTHON, "-m", "bench.load.naiveconsumer", "--client-id", client_id],
            control=True,
        )
        if self.naive is not None:
            naive.peak_rss = self.naive.peak_rss
        self.naive = naive

    async def consumed(self) -> float:
        """Return stored readings ÷ 3 as the naive process counts them."""
        assert self.naive is not None
        return (self.offset + int(self.naive.last.get("stored", 0))) / READINGS_PER_MESSAGE

    def measured(self) -> dict[str, Child]:
        """Return the naive consumer, Daphne and the WebSocket clients."""
        assert self.naive is not None
        return {"naive": self.naive, **super().measured()}

    def consumers(self) -> list[Child | None]:
        """Return the naive consumer."""
        return [self.naive]

    async def consistency(self) -> dict[str, Any]:
        """Return the naive process's error count."""
        assert self.naive is not None
        return {"naive_errors": int(self.naive.last.get("errors", 0))}
