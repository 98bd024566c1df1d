"""Devices that publish telemetry, each owned by one user."""

from __future__ import annotations

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
    last_seen = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["uid"]

    def __str__(self) -> str:
        return self.uid
