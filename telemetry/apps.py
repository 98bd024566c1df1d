"""The telemetry app: readings, rollups, ingest, live streaming and history."""

from django.apps import AppConfig
from django.core.checks import Tags, register
from django.db.models.signals import post_migrate


class TelemetryConfig(AppConfig):
    """Configure the telemetry app."""

    name = "telemetry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the app's system checks (they run in `hub check`, `migrate`, `hub serve`)."""
        from telemetry.checks import dashboard_assets_check
        from telemetry.storage_report import storage_line_at_migrate

        register(dashboard_assets_check, Tags.staticfiles)
        # `migrate` ends with one line saying which storage the hub is on.
        post_migrate.connect(storage_line_at_migrate, sender=self)
