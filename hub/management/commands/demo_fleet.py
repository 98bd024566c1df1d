"""`hub demo_fleet N`: the demo user and N simulated devices, with credentials for firmware-sim."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from hub.embedded import DEMO_USERNAME, demo_fleet_prepare


class Command(BaseCommand):
    """Register sim-0001…sim-N for the user "demo" and write their tokens for the simulator."""

    help = (
        "Create the demo user and N simulated devices (new tokens on each run); write "
        "HUB_VAR_DIR/simulator-credentials.jsonl for `firmware-sim --credentials`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the device count."""
        parser.add_argument("count", type=int, help="number of simulated devices")

    def handle(self, *args: Any, **options: Any) -> None:
        """Prepare the fleet and print the login and the credentials file."""
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        password, credentials = demo_fleet_prepare(options["count"], settings.VAR_DIR)
        self.stdout.write(f"Log in as: {DEMO_USERNAME} / {password}")
        self.stdout.write(f"Credentials: {credentials}")
