"""`hub ingest`: one ingest consumer worker (production)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from hub.runtime import run_until_signalled
from telemetry.ingest import ingest_run


class Command(BaseCommand):
    """Store batches from telemetry.ingest until SIGINT or SIGTERM."""

    help = "Run one ingest worker: store batches from telemetry.ingest and fan them out."

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the ingest consumer."""
        run_until_signalled(ingest_run)
