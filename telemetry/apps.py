"""The telemetry app: readings, rollups, ingest, live streaming and history."""

from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    """Configure the telemetry app."""

    name = "telemetry"
    default_auto_field = "django.db.models.BigAutoField"
