"""Alarm endpoints under /api/v1/ (CONTRACT §6)."""

from django.urls import path

import alarms.openapi  # noqa: F401 - describes the views below in /api/schema/
from alarms.api import (
    AlarmAckView,
    AlarmClearView,
    AlarmDetailView,
    AlarmListView,
    RuleDetailView,
    RuleListView,
    WebhookDetailView,
    WebhookListView,
)

urlpatterns = [
    path("alarm-rules/", RuleListView.as_view(), name="alarm-rules"),
    path("alarm-rules/<str:rule_id>/", RuleDetailView.as_view(), name="alarm-rule"),
    path("alarms/", AlarmListView.as_view(), name="alarms"),
    path("alarms/<str:alarm_id>/", AlarmDetailView.as_view(), name="alarm"),
    path("alarms/<str:alarm_id>/ack/", AlarmAckView.as_view(), name="alarm-ack"),
    path("alarms/<str:alarm_id>/clear/", AlarmClearView.as_view(), name="alarm-clear"),
    path("webhooks/", WebhookListView.as_view(), name="webhooks"),
    path("webhooks/<str:webhook_id>/", WebhookDetailView.as_view(), name="webhook"),
]
