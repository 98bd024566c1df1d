"""The apikeys app: read or write API keys, optionally limited to devices, stored hashed."""

from django.apps import AppConfig


class ApiKeysConfig(AppConfig):
    """Configure the apikeys app."""

    name = "apikeys"
    verbose_name = "API keys"
    default_auto_field = "django.db.models.BigAutoField"
