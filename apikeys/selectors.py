"""Read paths of API keys: a user's own keys."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet

from apikeys.models import ApiKey


def api_keys_of(*, owner: User) -> QuerySet[ApiKey]:
    """Return the user's keys, newest first, with their devices."""
    return (
        ApiKey.objects.filter(owner=owner).prefetch_related("devices").order_by("-created", "-id")
    )


def api_key_get(*, owner: User, key_id: int) -> ApiKey | None:
    """Return one of the user's keys, or None (others' included)."""
    return api_keys_of(owner=owner).filter(pk=key_id).first()
