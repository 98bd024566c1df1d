"""`hub bridge`: one MQTT bridge worker (production)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from bridges.mqtt.bridge import Bridge
from hub.runtime import bridge_config, run_until_signalled


class Command(BaseCommand):
    """Bridge MQTT_URL's broker to the channel layer until SIGINT or SIGTERM."""

    help = "Run one MQTT bridge worker: device messages in, batches to telemetry.ingest."

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the bridge."""
        config = bridge_config()

        async def main(stop: asyncio.Event) -> None:
            await Bridge(config).run(stop)

        run_until_signalled(main)
