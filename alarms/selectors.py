"""Read paths of the alarms app: a user's own rules, alarms and webhooks."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet

from alarms.models import Alarm, AlarmEvent, AlarmRule, Delivery, Webhook
from devices.models import Device

# Deliveries each webhook shows over REST, newest first.
RECENT_DELIVERIES = 10


def rules_of(*, owner: User, devices: QuerySet[Device] | None = None) -> QuerySet[AlarmRule]:
    """Return the user's rules, oldest first; with `devices`, only rules on those devices."""
    rules = AlarmRule.objects.filter(owner=owner)
    if devices is not None:
        rules = rules.filter(device__in=devices)
    return rules.select_related("device").order_by("id")


def rule_get(
    *, owner: User, rule_id: int, devices: QuerySet[Device] | None = None
) -> AlarmRule | None:
    """Return one of the user's rules (on one of `devices`, if given), or None."""
    return rules_of(owner=owner, devices=devices).filter(id=rule_id).first()


def alarms_of(
    *, owner: User, filters: dict[str, Any], devices: QuerySet[Device] | None = None
) -> QuerySet[Alarm]:
    """Return the user's alarms (of `devices`, if given) that match the filters, by field name."""
    alarms = Alarm.objects.filter(owner=owner).select_related("device", "acknowledged_by")
    if devices is not None:
        alarms = alarms.filter(device__in=devices)
    lookups = {"device": "device__uid", "rule": "rule_id"}
    for name, value in filters.items():
        alarms = alarms.filter(**{lookups.get(name, name): value})
    return alarms


def alarm_get(
    *, owner: User, alarm_id: int, devices: QuerySet[Device] | None = None
) -> Alarm | None:
    """Return one of the user's alarms (of one of `devices`, if given), or None."""
    return alarms_of(owner=owner, filters={}, devices=devices).filter(id=alarm_id).first()


def alarm_events(*, alarm: Alarm) -> list[AlarmEvent]:
    """Return every change of an alarm, oldest first."""
    return list(AlarmEvent.objects.filter(alarm=alarm).select_related("user").order_by("id"))


def webhooks_of(*, owner: User) -> QuerySet[Webhook]:
    """Return the user's webhooks, oldest first."""
    return Webhook.objects.filter(owner=owner).order_by("id")


def webhook_get(*, owner: User, webhook_id: int) -> Webhook | None:
    """Return one of the user's webhooks, or None (others' included)."""
    return webhooks_of(owner=owner).filter(id=webhook_id).first()


def deliveries_recent(*, webhook: Webhook) -> list[Delivery]:
    """Return a webhook's latest deliveries, newest first."""
    return list(Delivery.objects.filter(webhook=webhook).order_by("-id")[:RECENT_DELIVERIES])
