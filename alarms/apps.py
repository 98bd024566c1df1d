"""The alarms app: rules, alarms and their events, evaluation, the no-data sweep, webhooks."""

from django.apps import AppConfig


class AlarmsConfig(AppConfig):
    """Configure the alarms app."""

    name = "alarms"
    default_auto_field = "django.db.models.BigAutoField"
