"""The scale row (issue 8): the hub row with 2 bridges on a shared subscription + 2 workers."""

from __future__ import annotations

from typing import Any

from bench.rows.hub import HubRow
from bench.support.procs import Child
from bench.support.services import BIN, ROOT


class ScaleRow(HubRow):
    """Issue 8: two bridges on one shared subscription and two ingest workers, one Daphne.

    The same load and database as the hub row (1 bridge + 1 worker), so the two rows
    compare process counts on this machine's cores; the CPU columns show where it goes.
    """

    name = "scale"
    memory_watch = ()
    PAIRS = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bridges: list[Child] = []
        self.workers: list[Child] = []

    async def start_consumer(self) -> None:
        """Start the ingest workers and the bridges, all on the shared subscription."""
        self.env["HUB_MQTT_SHARED_GROUP"] = "hub"
        for index in range(1, self.PAIRS + 1):
            self.workers.append(
                await self.start_process(f"ingest-{index}", [str(BIN / "hub"), "ingest"])
            )
        await self.resume()

    async def pause(self) -> None:
        """Stop both bridges (SIGTERM: they drain); their sessions queue the rest."""
        for bridge in self.bridges:
            code = await bridge.stop()
            if code != 0:
                self.notes.append(f"{bridge.name} exited with {code} on SIGTERM")

    async def resume(self) -> None:
        """Start both bridges, each on its own persistent session in the shared group."""
        previous = {bridge.name: bridge.peak_rss for bridge in self.bridges}
        self.bridges = []
        for index in range(1, self.PAIRS + 1):
            name = f"bridge-{index}"
            bridge = await Child.start(
                name,
                [str(BIN / "hub"), "bridge"],
                env={**self.env, "HUB_MQTT_CLIENT_ID": f"{self.env['HUB_MQTT_CLIENT_ID']}-{index}"},
                log=self.context.workdir / f"{self.name}-{name}.log",
                cwd=ROOT,
            )
            bridge.peak_rss = previous.get(name, 0)
            self.bridges.append(bridge)

    def measured(self) -> dict[str, Child]:
        """Return the bridges, the workers, Daphne and the WebSocket clients."""
        assert self.daphne is not None and self.ws is not None
        return {
            **{child.name: child for child in (*self.bridges, *self.workers)},
            "daphne": self.daphne,
            "ws-clients": self.ws,
        }

    def consumers(self) -> list[Child | None]:
        """Return the bridges, then the ingest workers."""
        return [*self.bridges, *self.workers]

    def profile_targets(self) -> dict[str, int]:
        """No profile: the hub row profiles the same code."""
        return {}
