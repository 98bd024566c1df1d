"""API keys: a user's credentials for scripts and dashboards, read or write, stored hashed."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from devices.models import Device


class ApiKey(models.Model):
    """One API key: `hub_<prefix>_<secret>`; the prefix finds it, the secret's SHA-256 checks it."""

    class Scope(models.TextChoices):
        """What a key may do: read (safe methods only) or write (everything its owner may)."""

        READ = "read"
        WRITE = "write"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    # The key's public lookup part: 16 hex digits, shown in lists so a user can tell keys apart.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    # SHA-256 of the secret part: 256 random bits need no slow hash (as device tokens).
    secret_hash = models.CharField(max_length=64, editable=False)
    scope = models.CharField(max_length=5, choices=Scope.choices)
    # False: every device the owner has, now or later; True: only `devices`, and a device
    # deleted from under the key is gone from it (never "all" again).
    limited = models.BooleanField(default=False)
    devices = models.ManyToManyField(Device, blank=True, related_name="api_keys")
    expires = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Written at most once a minute per key (services.TOUCH_SECONDS), not on every request.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (hub_{self.prefix}_…)"
