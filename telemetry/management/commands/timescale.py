"""`hub timescale enable|status`: convert an existing database to TimescaleDB; say how it stands."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

from telemetry.storage_report import storage_line, storage_report
from telemetry.timescale import TimescaleMode, detect, readings_timescale_enable
from telemetry.timescale.detect import mode_advice


class Command(BaseCommand):
    """Make raw readings a compressed hypertable (idempotent), or print the storage line."""

    help = (
        "enable: make raw readings a TimescaleDB hypertable with compression and its policy "
        "(for a database migrated before TimescaleDB was installed or preloaded; safe to run "
        "again). status: print the storage line that `migrate` prints."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the action."""
        parser.add_argument("action", choices=["enable", "status"])

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the action."""
        if options["action"] == "enable":
            self._enable()
        self.stdout.write(storage_line(storage_report(connection, now=timezone.now())))

    def _enable(self) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(
                f"TimescaleDB needs PostgreSQL; this hub's database is {connection.vendor} "
                "(DATABASE_URL)"
            )
        mode = readings_timescale_enable(connection, say=self.stdout.write)
        if mode is TimescaleMode.ABSENT:
            raise CommandError(
                "TimescaleDB is not installed on this PostgreSQL server: install the "
                "timescaledb package for its PostgreSQL version, add timescaledb to "
                "shared_preload_libraries, restart PostgreSQL, then run this again"
            )
        if mode is not TimescaleMode.READY:
            probe = detect.timescale_probe(connection)
            raise CommandError(mode_advice(mode, probe.version if probe else None) or mode.value)
