"""The hub row: `hub bridge` + `hub ingest` + Daphne as in production, K WebSocket clients."""

from __future__ import annotations

from typing import Any

from bench.load.publisher import READINGS_PER_MESSAGE
from bench.rows.djangorow import DjangoRow
from bench.support.commits import burst_counts, rollup_totals, stored_readings_hub
from bench.support.procs import Child
from bench.support.services import BIN


class HubRow(DjangoRow):
    """`hub bridge` + `hub ingest` + Daphne, as in production."""

    name = "hub"
    counted = "readings committed (sum of 1-minute rollup counts, same transaction) ÷ 3"
    memory_watch: tuple[str, ...] = ("bridge", "ingest")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bridge: Child | None = None
        self.ingest: Child | None = None

    async def start_consumer(self) -> None:
        """Start the ingest worker and the bridge."""
        self.ingest = await self.start_process("ingest", [str(BIN / "hub"), "ingest"])
        await self.resume()

    async def pause(self) -> None:
        """Stop the bridge (SIGTERM: it drains); its persistent session keeps the rest."""
        assert self.bridge is not None
        code = await self.bridge.stop()
        if code != 0:
            self.notes.append(f"bridge exited with {code} on SIGTERM")

    async def resume(self) -> None:
        """Start a bridge on the same session."""
        bridge = await self.start_process("bridge", [str(BIN / "hub"), "bridge"])
        if self.bridge is not None:
            bridge.peak_rss = self.bridge.peak_rss
        self.bridge = bridge

    async def consumed(self) -> float:
        """Return committed readings ÷ 3, from the rollups."""
        assert self.conn is not None
        return await stored_readings_hub(self.conn) / READINGS_PER_MESSAGE

    def measured(self) -> dict[str, Child]:
        """Return bridge, ingest, Daphne and the WebSocket clients."""
        assert self.bridge is not None and self.ingest is not None
        return {"bridge": self.bridge, "ingest": self.ingest, **super().measured()}

    def consumers(self) -> list[Child | None]:
        """Return the bridge, then the ingest worker."""
        return [self.bridge, self.ingest]

    def profile_targets(self) -> dict[str, int]:
        """Return the bridge and the ingest worker."""
        assert self.bridge is not None and self.ingest is not None
        return {"bridge": self.bridge.ps.pid, "ingest": self.ingest.ps.pid}

    async def burst_check(self, since_ms: int) -> dict[str, Any]:
        """Return the raw rows and distinct (device, metric, ts) with a ts since `since_ms`."""
        assert self.conn is not None
        return await burst_counts(self.conn, since_ms)

    async def consistency(self) -> dict[str, Any]:
        """Return the rollup totals, which must equal the raw row count."""
        assert self.conn is not None
        minute, hour = await rollup_totals(self.conn)
        raw = await self.stored_readings()
        return {
            "rollup_1m": minute,
            "rollup_1h": hour,
            "raw_total": raw,
            "rollups_ok": minute == hour == raw,
        }
