"""What the ingest worker runs for alarms: after-commit fan-out, the no-data sweep, deliveries."""

from __future__ import annotations

import time
from collections.abc import Sequence

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer

from alarms.delivery import deliveries_run, deliveries_wake
from alarms.frames import AlarmChange, alarms_broadcast
from alarms.services import no_data_sweep
from core.moments import ms_to_datetime

__all__ = ["alarms_after_commit", "alarms_sweep", "deliveries_run"]


async def alarms_after_commit(layer: BaseChannelLayer, changes: Sequence[AlarmChange]) -> None:
    """Once a batch committed: send its alarm frames; wake the delivery loop if it has work."""
    if changes:
        await alarms_broadcast(layer, changes)
    if any(change.notified for change in changes):
        deliveries_wake()


async def alarms_sweep(layer: BaseChannelLayer) -> None:
    """Raise the no_data alarms that are due, then fan them out."""
    now = ms_to_datetime(time.time_ns() // 1_000_000)
    changes = await database_sync_to_async(no_data_sweep)(now=now)
    await alarms_after_commit(layer, changes)
