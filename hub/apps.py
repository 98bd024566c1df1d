"""The hub project as an app, so its management commands (serve, bridge, ingest) install."""

from django.apps import AppConfig


class HubConfig(AppConfig):
    """Configure the hub app; it starts nothing at import or in ready()."""

    name = "hub"

    def ready(self) -> None:
        """Register the hub's deploy checks."""
        from hub import checks  # noqa: F401 - registers them
