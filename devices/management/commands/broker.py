"""`hub broker sync [--dry-run]`: make the managed Mosquitto's accounts match the database."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devices.broker import broker_managed
from devices.broker_sync import broker_sync
from devices.dynsec import DynsecError


class Command(BaseCommand):
    """Manage the broker's device accounts (Mosquitto dynamic security)."""

    help = "Manage the MQTT broker's accounts. `sync` makes them match the database."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sync = actions.add_parser(
            "sync", help="create, repair, disable and delete broker clients to match the devices"
        )
        sync.add_argument(
            "--dry-run",
            action="store_true",
            help="report what would change, change nothing; exit 1 when changes are needed",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "sync":
            self.sync(dry_run=options["dry_run"])

    def sync(self, *, dry_run: bool) -> None:
        """Reconcile and print one line per change, then a summary."""
        if not broker_managed():
            raise CommandError(
                "MQTT_ADMIN_URL is not set: the hub does not manage the broker's accounts"
            )
        try:
            report = broker_sync(dry_run=dry_run)
        except DynsecError as error:
            raise CommandError(f"broker sync failed: {error}") from None
        for line in report.lines():
            self.stdout.write(line)
        if report.errors:
            raise CommandError(f"broker sync: {len(report.errors)} commands failed")
        if dry_run and report.changes:
            # Exit 1, so a check (cron, CI, a health probe) notices a broker out of sync.
            raise CommandError(
                f"broker sync --dry-run: {len(report.changes)} changes needed", returncode=1
            )
