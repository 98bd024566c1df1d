"""`hub prune`: apply the retention settings in bounded batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from telemetry.services import PRUNE_BATCH_SIZE, PruneCounts, readings_prune


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
        batch_size = options["batch_size"]
        counts = readings_prune(now=timezone.now(), batch_size=batch_size)
        self.stdout.write(prune_lines(counts, batch_size))


def prune_lines(counts: PruneCounts, batch_size: int) -> str:
    """Render what a prune removed: one line per table, chunks and rows apart."""
    readings = (
        f"readings: {counts.readings} deleted "
        f"(older than {counts.readings_before.isoformat(timespec='seconds')})"
    )
    if counts.chunks.chunks:
        readings += (
            f": {counts.chunks.rows} in {counts.chunks.chunks} whole chunks dropped, "
            f"{counts.readings_deleted} deleted row by row in batches of at most {batch_size}"
        )
    return (
        f"{readings}\n"
        f"rollups_1m: {counts.rollups_1m} deleted "
        f"(older than {counts.rollups_1m_before.isoformat(timespec='seconds')})"
    )
