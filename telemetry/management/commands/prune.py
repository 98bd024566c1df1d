"""`hub prune`: apply the retention settings in bounded batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from telemetry.services import PRUNE_BATCH_SIZE, readings_prune


class Command(BaseCommand):
    """Delete raw readings and 1-minute rollups past their retention; print the counts."""

    help = (
        "Delete raw readings older than HUB_RAW_RETENTION_DAYS and 1-minute rollups older "
        "than HUB_ROLLUP_1M_RETENTION_DAYS, a bounded batch per statement; hourly rollups "
        "and latest values stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare --batch-size."""
        parser.add_argument(
            "--batch-size",
            type=int,
            default=PRUNE_BATCH_SIZE,
            help=f"rows per DELETE statement and transaction (default {PRUNE_BATCH_SIZE})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Prune, then print one line per table."""
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        counts = readings_prune(now=timezone.now(), batch_size=options["batch_size"])
        self.stdout.write(
            f"readings: {counts.readings} deleted "
            f"(older than {counts.readings_before.isoformat(timespec='seconds')})\n"
            f"rollups_1m: {counts.rollups_1m} deleted "
            f"(older than {counts.rollups_1m_before.isoformat(timespec='seconds')})"
        )
