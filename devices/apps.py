"""The devices app: who may publish, and to whom their data belongs."""

from django.apps import AppConfig


class DevicesConfig(AppConfig):
    """Configure the devices app."""

    name = "devices"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect the receiver that removes deleted devices from a managed broker."""
        from devices import receivers  # noqa: F401  (connects by importing)
