"""Alarm rules, their per-device state, alarms and their events, webhooks and their outbox."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from devices.models import Device


class Condition(models.TextChoices):
    """What a rule watches for (README "Alarms" defines each precisely)."""

    ABOVE = "above"
    BELOW = "below"
    OUTSIDE = "outside"
    EQUALS = "equals"
    NO_DATA = "no_data"


class Severity(models.TextChoices):
    """How bad an alarm is, worst first."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"


class AlarmRule(models.Model):
    """A condition on one metric of one device, or of all the owner's devices (device NULL)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alarm_rules"
    )
    name = models.CharField(max_length=128)
    # NULL: every device the owner has, now or later.
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, null=True, blank=True, related_name="alarm_rules"
    )
    metric = models.CharField(max_length=128)
    condition = models.CharField(max_length=8, choices=Condition.choices)
    threshold = models.FloatField(null=True, blank=True)
    low = models.FloatField(null=True, blank=True)
    high = models.FloatField(null=True, blank=True)
    # equals: a boolean, string or number, compared with its JSON type.
    value = models.JSONField(null=True, blank=True)
    # no_data: seconds without a new reading of the metric (by the hub's clock).
    silence = models.PositiveIntegerField(null=True, blank=True)
    # Seconds of device time the condition must hold on every reading before raising.
    for_seconds = models.PositiveIntegerField(default=0)
    # above/below: the value at which an active alarm clears (NULL: the threshold).
    clear = models.FloatField(null=True, blank=True)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    updated = models.DateTimeField(default=timezone.now)
    # no_data: silence is measured from no earlier than this (creation, enabling, a change).
    watch_from = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["owner", "metric"], name="alarms_rule_owner_metric")]

    def __str__(self) -> str:
        return f"{self.name} ({self.metric} {self.condition})"


class Alarm(models.Model):
    """One episode of a rule's condition on one device: raised, maybe updated, then cleared."""

    class State(models.TextChoices):
        ACTIVE = "active"
        CLEARED = "cleared"

    rule = models.ForeignKey(AlarmRule, on_delete=models.CASCADE, related_name="alarms")
    # No index of their own: alarms_device_state and alarms_owner_started begin with them
    # (every index is written on each raise and clear, in the ingest's transaction).
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, related_name="alarms", db_index=False
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # Copied from the rule when raised: an alarm tells what it was raised as.
    name = models.CharField(max_length=128)
    metric = models.CharField(max_length=128)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    state = models.CharField(max_length=7, choices=State.choices, default=State.ACTIVE)
    acknowledged = models.BooleanField(default=False)
    started = models.DateTimeField()
    cleared = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # alarms_acknowledged_by: the few that are set
    )
    # The reading that raised it (or brought the condition back while active); NULL for no_data.
    value = models.JSONField(null=True, blank=True)
    peak = models.JSONField(null=True, blank=True)
    # When the alarm last changed, by the hub's clock: lists sort on it.
    changed = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-started", "-id"]
        constraints = [
            # At most one open alarm per (rule, device), whatever races.
            models.UniqueConstraint(
                fields=["rule", "device"],
                condition=Q(state="active"),
                name="alarms_one_active_per_rule_device",
            )
        ]
        indexes = [
            models.Index(fields=["owner", "-started", "-id"], name="alarms_owner_started"),
            models.Index(fields=["device", "state"], name="alarms_device_state"),
            models.Index(
                fields=["acknowledged_by"],
                condition=Q(acknowledged_by__isnull=False),
                name="alarms_acknowledged_by",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.device_id} ({self.state})"


class RuleState(models.Model):
    """What evaluation remembers per (rule, device), in the database so no crash loses it."""

    # No index of its own: alarms_state_rule_device begins with it.
    rule = models.ForeignKey(
        AlarmRule, on_delete=models.CASCADE, related_name="states", db_index=False
    )
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    # Device time (epoch ms) of the newest reading evaluated; older ones change nothing.
    last_ts = models.BigIntegerField(null=True, blank=True)
    # Device time (epoch ms) since which the condition held on every reading.
    pending_since = models.BigIntegerField(null=True, blank=True)
    # Whether the newest evaluated reading met the condition (an update needs it to return).
    holding = models.BooleanField(default=False)
    alarm = models.ForeignKey(
        Alarm,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # alarms_state_alarm: only the states that have one
    )
    # no_data: when (hub clock) the metric was last heard, and when it is silent too long.
    last_arrival = models.DateTimeField(null=True, blank=True)
    silent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "device"], name="alarms_state_rule_device")
        ]
        indexes = [
            models.Index(fields=["silent_at"], name="alarms_state_silent_at"),
            models.Index(
                fields=["alarm"], condition=Q(alarm__isnull=False), name="alarms_state_alarm"
            ),
        ]

    def __str__(self) -> str:
        return f"rule {self.rule_id} device {self.device_id}"


class AlarmEvent(models.Model):
    """One change of an alarm, by the rule, the no-data sweep or a user."""

    class Kind(models.TextChoices):
        RAISED = "raised"
        UPDATED = "updated"
        ACKNOWLEDGED = "acknowledged"
        CLEARED = "cleared"

    alarm = models.ForeignKey(Alarm, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    at = models.DateTimeField()
    # NULL: the rule (or the sweep) made the change.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # alarms_event_user: the users' changes, not the rules'
    )
    value = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["user"], condition=Q(user__isnull=False), name="alarms_event_user")
        ]

    def __str__(self) -> str:
        return f"{self.alarm_id} {self.kind}"


class Webhook(models.Model):
    """A URL that receives every change of its owner's alarms, signed with its secret."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=2048)
    secret = models.CharField(max_length=256)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url


class Delivery(models.Model):
    """One alarm change to POST to one webhook: the outbox row, written with the change."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # gave up after HUB_WEBHOOK_MAX_ATTEMPTS

    # Sent as "delivery": the receiver deduplicates on it.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    alarm = models.ForeignKey(Alarm, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=24)
    # The exact bytes POSTed (and signed), fixed when the change happened.
    body = models.TextField()
    state = models.CharField(max_length=9, choices=State.choices, default=State.PENDING)
    created = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    # Not sent before this; also the lease of a worker sending it right now.
    next_attempt = models.DateTimeField(default=timezone.now)
    last_attempt = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["next_attempt"],
                condition=Q(state="pending"),
                name="alarms_delivery_due",
            ),
            models.Index(fields=["webhook", "alarm", "id"], name="alarms_delivery_order"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.webhook_id} ({self.state})"


class Revision(models.Model):
    """A row per table that processes keep copies of, rewritten by a trigger on any change (0002).

    Evaluation keeps the enabled rules and the owners' webhooks it has read while their
    revisions are unchanged (alarms/rulebook.py).
    """

    RULES = 1
    WEBHOOKS = 2

    revision = models.BigIntegerField()

    def __str__(self) -> str:
        return f"revision {self.pk}: {self.revision}"
