"""Write paths of the alarms app: rules, acknowledging and clearing by hand, the no-data sweep."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from alarms.conditions import ACKNOWLEDGED, CLEARED, RAISED
from alarms.evaluation import Changes
from alarms.frames import AlarmChange
from alarms.models import Alarm, AlarmRule, Condition, RuleState, Webhook

# At most this many silent (rule, device) pairs raise per sweep; the next sweep takes the rest.
SWEEP_BATCH = 1000
# Changing any of these makes a rule start afresh (README "Alarms").
WATCHED_FIELDS = frozenset(
    {
        "device",
        "metric",
        "condition",
        "threshold",
        "low",
        "high",
        "value",
        "silence",
        "for_seconds",
        "clear",
    }
)


def _watch_start(rule: AlarmRule, now: datetime) -> None:
    """Start watching a single-device no_data rule: silent `silence` seconds from now."""
    if rule.enabled and rule.condition == Condition.NO_DATA and rule.device_id is not None:
        RuleState.objects.get_or_create(
            rule=rule,
            device_id=rule.device_id,
            defaults={"silent_at": now + timedelta(seconds=rule.silence or 0)},
        )


@transaction.atomic
def rule_create(*, owner: User, **fields: Any) -> AlarmRule:
    """Create a rule; validated by the caller (alarms.serializers)."""
    now = timezone.now()
    rule = AlarmRule.objects.create(owner=owner, created=now, updated=now, watch_from=now, **fields)
    _watch_start(rule, now)
    return rule


@transaction.atomic
def rule_update(*, rule: AlarmRule, user: User, **fields: Any) -> list[AlarmChange]:
    """Change a rule. A change of what it watches, or disabling it, starts it afresh.

    Afresh: its open alarms are cleared (by this user) and its per-device state
    (pending `for` timers, last evaluated reading, silence) is forgotten.
    """
    now = timezone.now()
    watched = any(
        getattr(rule, name) != value for name, value in fields.items() if name in WATCHED_FIELDS
    )
    restart = watched or (fields.get("enabled") is not None and fields["enabled"] != rule.enabled)
    for name, value in fields.items():
        setattr(rule, name, value)
    rule.updated = now
    changes: list[AlarmChange] = []
    if restart:
        rule.watch_from = now
        changes = _rule_alarms_clear(rule=rule, user=user, now=now)
        RuleState.objects.filter(rule=rule).delete()
    rule.save()
    if restart:
        _watch_start(rule, now)
    return changes


def rule_delete(*, rule: AlarmRule) -> None:
    """Delete a rule with its alarms, their events and pending deliveries."""
    rule.delete()


def _rule_alarms_clear(*, rule: AlarmRule, user: User, now: datetime) -> list[AlarmChange]:
    changes = Changes()
    # The states first, in evaluation's order, then the alarms: no deadlock with a batch.
    list(RuleState.objects.select_for_update().filter(rule=rule).order_by("device_id"))
    for alarm in (
        Alarm.objects.select_for_update(of=("self",))
        .select_related("device")
        .filter(rule=rule, state=Alarm.State.ACTIVE)
        .order_by("id")
    ):
        alarm.state, alarm.cleared, alarm.changed = Alarm.State.CLEARED, now, now
        changes.add(alarm, CLEARED, now, None, uid=alarm.device.uid, user_id=user.pk)
    return changes.save()


@transaction.atomic
def alarm_acknowledge(*, alarm: Alarm, user: User) -> list[AlarmChange]:
    """Acknowledge an alarm (active or cleared); acknowledging twice changes nothing."""
    now = timezone.now()
    locked = Alarm.objects.select_for_update(of=("self",)).select_related("device").get(pk=alarm.pk)
    if locked.acknowledged:
        return []
    locked.acknowledged, locked.acknowledged_at, locked.acknowledged_by = True, now, user
    locked.changed = now
    locked.save(update_fields=["acknowledged", "acknowledged_at", "acknowledged_by", "changed"])
    changes = Changes()
    changes.add(locked, ACKNOWLEDGED, now, None, uid=locked.device.uid, user_id=user.pk)
    return changes.save()


@transaction.atomic
def alarm_clear(*, alarm: Alarm, user: User) -> list[AlarmChange]:
    """Clear an active alarm by hand; the rule raises a new one if its condition holds again."""
    now = timezone.now()
    # The state first, then the alarm: evaluation's order.
    state = (
        RuleState.objects.select_for_update(of=("self",))
        .select_related("rule")
        .filter(rule_id=alarm.rule_id, device_id=alarm.device_id)
        .first()
    )
    locked = Alarm.objects.select_for_update(of=("self",)).select_related("device").get(pk=alarm.pk)
    if locked.state == Alarm.State.CLEARED:
        return []
    locked.state, locked.cleared, locked.changed = Alarm.State.CLEARED, now, now
    changes = Changes()
    changes.add(locked, CLEARED, now, None, uid=locked.device.uid, user_id=user.pk)
    saved = changes.save()
    if state is not None and state.alarm_id == locked.pk:
        state.alarm = None
        state.pending_since = None
        state.holding = False
        if state.rule.condition == Condition.NO_DATA:
            # Silence is measured afresh from the clear, or the next sweep would raise again.
            state.silent_at = now + timedelta(seconds=state.rule.silence or 0)
        state.save(update_fields=["alarm", "pending_since", "holding", "silent_at"])
    return saved


def no_data_sweep(*, now: datetime) -> list[AlarmChange]:
    """Raise a no_data alarm for each watched (rule, device) silent past its rule's limit."""
    with transaction.atomic():
        # Skip states a batch holds: it is storing that device's readings right now.
        states = list(
            RuleState.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("rule", "device")
            .filter(
                silent_at__lte=now,
                alarm__isnull=True,
                rule__enabled=True,
                rule__condition=Condition.NO_DATA,
                device__active=True,
            )
            .order_by("rule_id", "device_id")[:SWEEP_BATCH]
        )
        if not states:
            return []
        changes = Changes()
        for state in states:
            rule = state.rule
            alarm = Alarm(
                rule=rule,
                device=state.device,
                owner_id=rule.owner_id,
                name=rule.name,
                metric=rule.metric,
                severity=rule.severity,
                started=now,
                changed=now,
            )
            changes.add(alarm, RAISED, now, None, uid=state.device.uid)
            state.alarm = alarm
        saved = changes.save()
        RuleState.objects.bulk_update(states, ["alarm"])
        return saved


def webhook_create(*, owner: User, url: str, secret: str | None, enabled: bool) -> Webhook:
    """Create a webhook; without a secret, one is made (shown once in the response)."""
    return Webhook.objects.create(
        owner=owner, url=url, secret=secret or secrets.token_urlsafe(32), enabled=enabled
    )


def webhook_update(*, webhook: Webhook, **fields: Any) -> Webhook:
    """Change a webhook's url, secret or enabled flag."""
    for name, value in fields.items():
        setattr(webhook, name, value)
    webhook.save()
    return webhook
