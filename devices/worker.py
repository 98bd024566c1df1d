"""What the ingest worker runs for devices: the presence and command-expiry sweep."""

from __future__ import annotations

import time

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer

from core.conf import hub_settings
from core.moments import ms_to_datetime
from devices.dispatch import commands_broadcast, status_broadcast
from devices.metrics import commands_updated
from devices.services import Swept, presence_and_commands_sweep


async def devices_sweep(layer: BaseChannelLayer) -> int:
    """Expire overdue commands, mark silent devices offline, tell the sockets; return failed sends.

    Devices without a status topic count as offline after HUB_OFFLINE_AFTER seconds of silence.
    """
    now_ms = time.time_ns() // 1_000_000
    swept: Swept = await database_sync_to_async(presence_and_commands_sweep)(
        now=ms_to_datetime(now_ms), offline_after_s=hub_settings.OFFLINE_AFTER
    )
    commands_updated(swept.expired)
    await commands_broadcast(layer, swept.expired)
    return await status_broadcast(layer, swept.silent, at_ms=now_ms)
