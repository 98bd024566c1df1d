"""`hub bridge`: one MQTT bridge worker (production)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bridges.mqtt.bridge import Bridge
from bridges.mqtt.provision import ProvisionResponder
from hub.broker import key_claim_answer_managed
from hub.dependencies import dependencies_wait, redis_probe
from hub.health import channel_layer_check, connected_check
from hub.metrics import bridge_watch
from hub.metrics_server import metrics_arguments, metrics_serving
from hub.runtime import bridge_config, redis_required, run_until_signalled


class Command(BaseCommand):
    """Bridge MQTT_URL's broker to the channel layer until SIGINT or SIGTERM."""

    help = "Run one MQTT bridge worker: device messages in, batches to telemetry.ingest."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare --metrics-port and --metrics-host."""
        metrics_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the bridge; with --metrics-port, serve /metrics and /healthz beside it."""
        redis_required("bridge")
        config = bridge_config()

        async def main(stop: asyncio.Event) -> None:
            bridge = Bridge(config)
            bridge_watch(bridge)
            checks = {
                "mqtt": connected_check(bridge.connected, "the MQTT broker"),
                "channel_layer": channel_layer_check,
            }
            with metrics_serving(options, checks):
                # Redis unreachable at start: wait, one line per attempt. The bridge retries
                # the broker itself, and Redis when it goes away later.
                if await dependencies_wait(stop, "bridge", [redis_probe]):
                    # Beside the bridge: the MQTT claims of devices (CONTRACT §7).
                    responder = ProvisionResponder(config, key_claim_answer_managed)
                    await asyncio.gather(bridge.run(stop), responder.run(stop))

        run_until_signalled(main)
