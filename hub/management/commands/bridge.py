"""`hub bridge`: one MQTT bridge worker (production)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bridges.mqtt.bridge import Bridge
from hub.health import channel_layer_check, connected_check
from hub.metrics import bridge_watch
from hub.metrics_server import metrics_arguments, metrics_serving
from hub.runtime import bridge_config, run_until_signalled


class Command(BaseCommand):
    """Bridge MQTT_URL's broker to the channel layer until SIGINT or SIGTERM."""

    help = "Run one MQTT bridge worker: device messages in, batches to telemetry.ingest."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare --metrics-port and --metrics-host."""
        metrics_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the bridge; with --metrics-port, serve /metrics and /healthz beside it."""
        config = bridge_config()

        async def main(stop: asyncio.Event) -> None:
            bridge = Bridge(config)
            bridge_watch(bridge)
            checks = {
                "mqtt": connected_check(bridge.connected, "the MQTT broker"),
                "channel_layer": channel_layer_check,
            }
            with metrics_serving(options, checks):
                await bridge.run(stop)

        run_until_signalled(main)
