"""`hub ingest`: one ingest consumer worker (production)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hub.dependencies import ServiceGate, database_probe, redis_probe
from hub.health import channel_layer_check, worker_database_check
from hub.metrics_server import metrics_arguments, metrics_serving
from hub.runtime import redis_required, run_until_signalled
from telemetry.ingest import ingest_run


class Command(BaseCommand):
    """Store batches from telemetry.ingest until SIGINT or SIGTERM."""

    help = "Run one ingest worker: store batches from telemetry.ingest and fan them out."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare --metrics-port and --metrics-host."""
        metrics_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the ingest consumer; with --metrics-port, serve /metrics and /healthz beside it."""
        redis_required("ingest")
        checks = {"database": worker_database_check, "channel_layer": channel_layer_check}

        async def main(stop: asyncio.Event) -> None:
            # A service unreachable at start may be starting too, or may go away later:
            # wait for it, one line per attempt.
            services_wait = ServiceGate("ingest", [database_probe, redis_probe])
            with metrics_serving(options, checks):
                if await services_wait(stop):
                    await ingest_run(stop, services_wait=services_wait)

        run_until_signalled(main)
