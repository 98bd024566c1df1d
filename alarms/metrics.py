"""Prometheus series of the alarms app (docs/metrics.md lists every series of the hub)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ALARM_CHANGES = Counter(
    "hub_alarm_changes",
    "Alarm changes committed by this process, by event: raised, updated, acknowledged, cleared.",
    ["event"],
)
WEBHOOK_ATTEMPTS = Counter(
    "hub_webhook_attempts",
    "Webhook POSTs this process made, by result: delivered (2xx), failed (an error or another "
    "status; retried with backoff), refused (the URL's address is not public), gave_up (the "
    "last of HUB_WEBHOOK_MAX_ATTEMPTS failed).",
    ["result"],
)
WEBHOOK_DELIVERED = WEBHOOK_ATTEMPTS.labels("delivered")
WEBHOOK_FAILED = WEBHOOK_ATTEMPTS.labels("failed")
WEBHOOK_REFUSED = WEBHOOK_ATTEMPTS.labels("refused")
WEBHOOK_GAVE_UP = WEBHOOK_ATTEMPTS.labels("gave_up")
WEBHOOK_PENDING = Gauge(
    "hub_webhook_deliveries_pending",
    "Webhook deliveries not yet delivered nor given up (all workers'), as this process last "
    "counted them.",
)
WEBHOOK_OLDEST_PENDING = Gauge(
    "hub_webhook_oldest_pending_seconds",
    "Age of the oldest pending webhook delivery (0 when none), as this process last counted.",
)
