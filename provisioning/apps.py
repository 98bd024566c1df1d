"""The provisioning app: keys with which devices register themselves."""

from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    """Configure the provisioning app."""

    name = "provisioning"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Let `hub broker sync` repair the keys' broker accounts too."""
        from devices.broker_sync import SYNC_EXTENSIONS
        from provisioning.broker_sync import keys_sync

        if keys_sync not in SYNC_EXTENSIONS:
            SYNC_EXTENSIONS.append(keys_sync)
