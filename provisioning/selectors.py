"""Read paths of provisioning: a user's keys."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet

from provisioning.models import ProvisioningKey


def keys_of(*, owner: User) -> QuerySet[ProvisioningKey]:
    """Return the user's keys, newest first, revoked ones included."""
    return ProvisioningKey.objects.filter(owner=owner).order_by("-created", "-id")


def key_get(*, owner: User, key_id: str) -> ProvisioningKey | None:
    """Return the user's key with this id, or None (others' keys included)."""
    if not key_id.isascii() or not key_id.isdigit() or len(key_id) > 18:
        return None
    return ProvisioningKey.objects.filter(owner=owner, pk=int(key_id)).first()


def keys_unrevoked(*, keys: list[str]) -> set[str]:
    """Return those of `keys` that exist and are not revoked (for the embedded broker)."""
    rows = ProvisioningKey.objects.filter(key__in=keys, revoked_at__isnull=True)
    return set(rows.values_list("key", flat=True))
