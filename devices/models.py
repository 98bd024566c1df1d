"""Devices that publish telemetry, each owned by one user."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

UID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z"


class Device(models.Model):
    """A registered device: its MQTT username is its uid, its password a token."""

    uid = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(UID_PATTERN, "letters, digits, _ and -; at most 64")],
    )
    name = models.CharField(max_length=128, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="devices"
    )
    # SHA-256 of the token: tokens are 256 random bits, so a slow hash buys nothing
    # and would cost every broker connect.
    token_hash = models.CharField(max_length=64, editable=False)
    active = models.BooleanField(default=True)
    online = models.BooleanField(default=False)
    # Set once the device publishes devices/{uid}/status: then that topic, not
    # silence, says when it goes offline.
    reports_status = models.BooleanField(default=False)
    last_seen = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["uid"]

    def __str__(self) -> str:
        return self.uid


def command_id_new() -> str:
    """Return a new command id: 32 hex digits, safe in an MQTT topic level."""
    return uuid.uuid4().hex


class CommandStatus(models.TextChoices):
    """Where a command is: pending → sent → succeeded / failed, or expired."""

    PENDING = "pending"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


FINISHED = (CommandStatus.SUCCEEDED, CommandStatus.FAILED, CommandStatus.EXPIRED)


class Command(models.Model):
    """A remote procedure call to a device, with its tracked status."""

    id = models.CharField(primary_key=True, max_length=32, default=command_id_new, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="commands")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    method = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    timeout = models.PositiveIntegerField()
    status = models.CharField(
        max_length=10, choices=CommandStatus.choices, default=CommandStatus.PENDING
    )
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.method} → {self.device_id} ({self.status})"


class PresenceEvent(models.Model):
    """One change of a device's online state."""

    class Source(models.TextChoices):
        STATUS = "status", "status topic"
        DATA = "data", "data arrived"
        SILENCE = "silence", "silent too long"

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="presence")
    online = models.BooleanField()
    at = models.DateTimeField()
    source = models.CharField(max_length=8, choices=Source.choices)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["device", "-at"])]

    def __str__(self) -> str:
        return f"{self.device_id} {'online' if self.online else 'offline'} at {self.at}"


class DeviceAttributes(models.Model):
    """A device's configuration as users want it (desired) and its state as it reports it."""

    device = models.OneToOneField(
        Device, on_delete=models.CASCADE, primary_key=True, related_name="attributes"
    )
    desired = models.JSONField(default=dict)
    # Bumped by every change of `desired`; the device sees it in each desired message.
    version = models.PositiveIntegerField(default=0)
    desired_at = models.DateTimeField(null=True, blank=True)
    reported = models.JSONField(default=dict)
    reported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "device attributes"

    def __str__(self) -> str:
        return f"attributes of {self.device_id} (version {self.version})"
