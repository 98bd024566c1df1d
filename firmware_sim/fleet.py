"""Run a fleet of simulated devices on the current event loop until told to stop."""

from __future__ import annotations

import asyncio
import logging
import time

from firmware_sim.config import FleetConfig
from firmware_sim.device import SimulatedDevice
from firmware_sim.faults import LEAD_S, DeviceFault
from firmware_sim.stats import FleetStats

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 5.0  # how long devices get to publish offline and disconnect


async def run_fleet(
    config: FleetConfig, stop: asyncio.Event, *, stats: FleetStats | None = None
) -> FleetStats:
    """Run every device of `config` until `stop` is set, then shut them down cleanly."""
    # Pass `stats` to watch the counters while the fleet runs. Cancelling the call stops
    # at once: each connected device still says offline, but waits for no acknowledgement.
    stats = stats if stats is not None else FleetStats()
    count = len(config.identities)
    stats.devices = count
    # Every faulty device runs on the same cycle, from now.
    start = time.time()
    faulty = config.faulty()
    for uid, spec in faulty.items():
        logger.info(
            "%s: fault %s for %g s in every %g s, first after %g s",
            uid,
            spec.kind,
            spec.duration,
            spec.every,
            LEAD_S,
        )
    devices = [
        SimulatedDevice(
            identity,
            config,
            stats,
            phase=index / count,
            fault=DeviceFault(faulty[identity.uid], start) if identity.uid in faulty else None,
        )
        for index, identity in enumerate(config.identities)
    ]
    tasks = [
        asyncio.create_task(device.run(), name=f"firmware-sim {device.uid}") for device in devices
    ]
    for task in tasks:
        task.add_done_callback(_log_failure)
    try:
        await stop.wait()
        for device in devices:
            device.request_stop()
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
        if pending:
            logger.warning("%d devices did not stop within %.0f s", len(pending), DRAIN_TIMEOUT_S)
    finally:
        await _cancel_all(tasks)
    return stats


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks still running and wait until they are gone."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    """Log a device task that died of a bug, as soon as it does."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("%s failed", task.get_name(), exc_info=exc)
