"""`hub serve`: the whole hub in one process (embedded mode)."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from core.conf import hub_settings
from hub.dependencies import database_probe_sync
from hub.embedded import EmbeddedHub, ServeOptions
from hub.startup import StartupError


class Command(BaseCommand):
    """Migrate, then run broker, Daphne, bridge and ingest consumer until Ctrl-C."""

    help = "Run the whole hub in one process, optionally with N simulated devices."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare --host, --port, --mqtt-port, --simulate and --simulate-rate."""
        parser.add_argument("--host", default="127.0.0.1", help="address for HTTP and MQTT")
        parser.add_argument("--port", type=int, default=8000, help="HTTP and WebSocket port")
        parser.add_argument(
            "--mqtt-port", type=int, default=None, help="embedded broker port (default 1884)"
        )
        parser.add_argument(
            "--simulate", type=int, default=0, metavar="N", help="run N simulated devices"
        )
        parser.add_argument(
            "--simulate-rate",
            type=float,
            default=1.0,
            metavar="R",
            help="messages per second of each simulated device",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the embedded hub."""
        from django.conf import settings

        if settings.MQTT_URL is not None:
            self.stderr.write(
                "hub serve runs its own broker; unset MQTT_URL, or run `hub bridge` "
                "and `hub ingest` beside Daphne for production."
            )
            raise SystemExit(2)
        problem = database_probe_sync()
        if problem is not None:
            raise StartupError(problem)
        call_command("migrate", interactive=False, verbosity=0)
        EmbeddedHub(
            ServeOptions(
                host=options["host"],
                port=options["port"],
                mqtt_port=options["mqtt_port"] or hub_settings.MQTT_PORT,
                simulate=options["simulate"],
                simulate_rate=options["simulate_rate"],
            )
        ).run()
