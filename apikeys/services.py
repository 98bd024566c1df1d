"""Write paths of API keys: create (the key shown once), revoke, delete, check, note use."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apikeys.models import ApiKey
from devices.access import KeyGrant
from devices.models import Device

# hub_<16 hex digits: the lookup prefix>_<43 URL-safe characters: 256 random bits>.
KEY_PATTERN: Final = re.compile(r"hub_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
KEY_PREFIX: Final = "hub_"
# last_used_at is written at most once per this many seconds per key, not on every request.
TOUCH_SECONDS: Final = 60


class KeyRefused(Exception):
    """An API key that cannot be used; the message says why (the 401's detail)."""


def secret_hash(secret: str) -> str:
    """Return the SHA-256 hex digest of a key's secret part."""
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_key(text: str) -> bool:
    """Tell whether a credential is meant as an API key (it starts with hub_)."""
    return text.startswith(KEY_PREFIX)


@transaction.atomic
def api_key_create(
    *,
    owner: User,
    name: str,
    scope: str,
    devices: Sequence[Device] | None,
    expires: datetime | None,
) -> tuple[ApiKey, str]:
    """Create a key for the owner; return it and its text, which is never available again."""
    prefix = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        owner=owner,
        name=name,
        prefix=prefix,
        secret_hash=secret_hash(secret),
        scope=scope,
        limited=devices is not None,
        expires=expires,
    )
    if devices is not None:
        key.devices.set(devices)
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key: it stops working at once (open sockets within the recheck interval)."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def api_key_delete(*, key: ApiKey) -> None:
    """Delete a (revoked) key for good."""
    key.delete()


def api_key_check(*, text: str, now: datetime) -> ApiKey:
    """Return the usable key this text is; raise KeyRefused naming why not."""
    match = KEY_PATTERN.fullmatch(text)
    key = (
        ApiKey.objects.select_related("owner").filter(prefix=match.group(1)).first()
        if match
        else None
    )
    # Compared in constant time, and hashed even for unknown prefixes, so timing tells nothing.
    given = secret_hash(match.group(2) if match else text)
    if key is None or not hmac.compare_digest(key.secret_hash, given):
        raise KeyRefused("Invalid API key.")
    if key.revoked_at is not None:
        raise KeyRefused("API key revoked.")
    if key.expires is not None and key.expires <= now:
        raise KeyRefused("API key expired.")
    if not key.owner.is_active:
        raise KeyRefused("User inactive or deleted.")
    return key


def api_key_touch(*, key: ApiKey, now: datetime) -> None:
    """Note the key's use, at most once per TOUCH_SECONDS (one UPDATE, none in between)."""
    last = key.last_used_at
    if last is not None and now - last < timedelta(seconds=TOUCH_SECONDS):
        return
    stale = Q(last_used_at__isnull=True) | Q(
        last_used_at__lt=now - timedelta(seconds=TOUCH_SECONDS)
    )
    ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)
    key.last_used_at = now


def api_key_grant(*, key: ApiKey) -> KeyGrant:
    """Return what the key allows: its scope and, when limited, its devices' ids and uids."""
    if not key.limited:
        return KeyGrant(key.pk, key.scope == ApiKey.Scope.READ, None, None)
    pairs = list(key.devices.filter(owner_id=key.owner_id).values_list("id", "uid"))
    return KeyGrant(
        key.pk,
        key.scope == ApiKey.Scope.READ,
        frozenset(pk for pk, _ in pairs),
        frozenset(uid for _, uid in pairs),
    )


def api_key_grant_current(*, key_id: int, now: datetime) -> KeyGrant | None:
    """Return a key's grant as it is now, or None once it is revoked, expired or gone."""
    key = ApiKey.objects.select_related("owner").filter(pk=key_id).first()
    if key is None or key.revoked_at is not None or not key.owner.is_active:
        return None
    if key.expires is not None and key.expires <= now:
        return None
    return api_key_grant(key=key)
