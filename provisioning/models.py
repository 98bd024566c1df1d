"""Provisioning keys: a secret with which devices register themselves for the key's owner."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ProvisioningKey(models.Model):
    """A key and its hashed secret; each claim registers one device for the owner."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provisioning_keys"
    )
    name = models.CharField(max_length=128, blank=True)
    key = models.CharField(max_length=64, unique=True, editable=False)
    # SHA-256 of the secret (256 random bits, as device tokens are).
    secret_hash = models.CharField(max_length=64, editable=False)
    # None: no limit.
    max_devices = models.PositiveIntegerField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True)
    # Claimed uids must start with it ("" allows any uid).
    uid_prefix = models.CharField(max_length=63, blank=True)
    devices_claimed = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["owner", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.key} ({self.name or 'unnamed'})"
