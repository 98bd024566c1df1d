"""Write paths of provisioning: create and revoke keys, claim a device with one."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core.conf import hub_settings
from devices.dynsec import KEY_USERNAME_PREFIX
from devices.models import Device
from devices.selectors import uid_is_valid
from devices.services import device_add
from provisioning.broker import broker_key_answer_open, broker_key_register, broker_key_remove
from provisioning.models import ProvisioningKey

# A uid prefix has the shape of the start of a uid.
UID_PREFIX_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
UID_PREFIX_MESSAGE: Final = "1 to 63 letters, digits, _ or -, starting with a letter or digit"
NAME_MAX: Final = 128


class ClaimRefused(Exception):
    """A claim the hub refuses: `code` is the answer's error, `status` its HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# Each refusal with its own code (CONTRACT §7): HTTP status, then the message.
REFUSALS: Final = {
    "key_invalid": (403, "unknown provisioning key or wrong secret"),
    "key_revoked": (403, "this provisioning key was revoked"),
    "key_expired": (403, "this provisioning key has expired"),
    "key_exhausted": (403, "this provisioning key has claimed all the devices it may"),
    "uid_taken": (409, "a device with this uid already exists"),
    "uid_invalid": (400, "uid must be 1 to 64 letters, digits, _ or -, starting with one"),
    "uid_prefix": (400, "uid must start with the provisioning key's uid prefix"),
    "name_invalid": (400, f"name must be a string of at most {NAME_MAX} characters"),
}


def refused(code: str, detail: str | None = None) -> ClaimRefused:
    """Return the ClaimRefused of this code."""
    status, message = REFUSALS[code]
    return ClaimRefused(code, detail or message, status)


def secret_hash(secret: str) -> str:
    """Return the stored form of a key's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyCreated:
    """A new key and its secret, which is shown this once."""

    key: ProvisioningKey
    secret: str


def key_create(
    *,
    owner: User,
    name: str = "",
    max_devices: int | None = None,
    expires: datetime | None = None,
    uid_prefix: str = "",
) -> KeyCreated:
    """Create a key for the owner, within HUB_PROVISIONING_KEYS_PER_USER live keys.

    Where the hub manages the broker, the key's account is created before the
    transaction commits (BrokerUnavailable: no key).
    """
    if uid_prefix and not UID_PREFIX_PATTERN.fullmatch(uid_prefix):
        raise ValidationError({"uid_prefix": [UID_PREFIX_MESSAGE]})
    if max_devices is not None and max_devices < 1:
        raise ValidationError({"max_devices": ["must be at least 1, or null for no limit"]})
    if expires is not None and expires <= timezone.now():
        raise ValidationError({"expires": ["must be in the future"]})
    secret = secrets.token_urlsafe(32)
    key = ProvisioningKey(
        owner=owner,
        name=name,
        key=f"{KEY_USERNAME_PREFIX}{secrets.token_urlsafe(16)}",
        secret_hash=secret_hash(secret),
        max_devices=max_devices,
        expires=expires,
        uid_prefix=uid_prefix,
    )
    key.full_clean()
    limit = hub_settings.PROVISIONING_KEYS_PER_USER
    with transaction.atomic():
        # The owner's row orders concurrent creations, so the cap holds.
        get_user_model()._default_manager.select_for_update().filter(pk=owner.pk).first()
        live = ProvisioningKey.objects.filter(owner=owner, revoked_at__isnull=True).count()
        if live >= limit:
            raise ValidationError(
                {
                    "limit": [
                        f"at most {limit} provisioning keys per user, revoked ones aside "
                        "(HUB_PROVISIONING_KEYS_PER_USER)"
                    ]
                }
            )
        key.save(force_insert=True)
        broker_key_register(key=key.key, secret=secret, secret_hash=key.secret_hash)
    return KeyCreated(key, secret)


def key_revoke(*, key: ProvisioningKey) -> ProvisioningKey:
    """Revoke a key: no more claims; its broker account goes (BrokerUnavailable: not revoked)."""
    if key.revoked_at is not None:
        return key
    with transaction.atomic():
        now = timezone.now()
        ProvisioningKey.objects.filter(pk=key.pk).update(revoked_at=now)
        broker_key_remove(key=key.key)
    key.revoked_at = now
    return key


def key_authenticate(*, key: str, secret: str) -> ProvisioningKey | None:
    """Return the unrevoked key with this secret, or None (for the embedded broker's CONNECT)."""
    row = key_with_secret(key=key, secret=secret)
    return row if row is not None and row.revoked_at is None else None


def key_with_secret(*, key: str, secret: str) -> ProvisioningKey | None:
    """Return the key if the secret is its own; compare in constant time even when unknown."""
    row = ProvisioningKey.objects.filter(key=key).first() if _key_shaped(key) else None
    expected = row.secret_hash if row is not None else secret_hash("")
    matches = hmac.compare_digest(expected, secret_hash(secret))
    return row if row is not None and matches else None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A device registered by a claim, with its token (shown this once)."""

    device: Device
    token: str
    key: str


def device_claim(
    *, key: str, secret: str, uid: str, name: str = "", answer_open: bool = False
) -> Claimed:
    """Register device `uid` for the key's owner; raise ClaimRefused with the reason.

    One transaction with the key's row locked: two claims of a key's last device
    cannot both pass. The device's broker account is made before it commits
    (devices.services.device_add); with `answer_open` the key's broker accounts
    may receive the answer on provision/{uid}/response (managed Mosquitto), the
    answer to a refusal too once the secret was right.
    """
    verified: ProvisioningKey | None = None
    try:
        with transaction.atomic():
            verified = _key_verified(key=key, secret=secret)
            _key_usable(verified)
            token, device = _device_claim(verified, uid=uid, name=name)
            if answer_open:
                broker_key_answer_open(key=verified.key, uid=uid)
    except ClaimRefused:
        if answer_open and verified is not None and verified.revoked_at is None:
            broker_key_answer_open(key=verified.key, uid=uid)
        raise
    return Claimed(device, token, verified.key)


def _key_shaped(key: str) -> bool:
    # Keeps NUL bytes and other junk away from the database.
    return key.startswith(KEY_USERNAME_PREFIX) and len(key) <= 64 and "\x00" not in key


def _key_verified(*, key: str, secret: str) -> ProvisioningKey:
    """Lock and return the key if the secret is its own."""
    row = None
    if isinstance(key, str) and _key_shaped(key):
        row = ProvisioningKey.objects.select_for_update().filter(key=key).first()
    expected = row.secret_hash if row is not None else secret_hash("")
    given = secret if isinstance(secret, str) else ""
    if not hmac.compare_digest(expected, secret_hash(given)) or row is None:
        raise refused("key_invalid")
    return row


def _key_usable(row: ProvisioningKey) -> None:
    """Refuse a key that may not claim another device: revoked, expired or exhausted."""
    if row.revoked_at is not None:
        raise refused("key_revoked")
    if row.expires is not None and row.expires <= timezone.now():
        raise refused("key_expired")
    if row.max_devices is not None and row.devices_claimed >= row.max_devices:
        raise refused("key_exhausted")


def _device_claim(row: ProvisioningKey, *, uid: str, name: str) -> tuple[str, Device]:
    if not isinstance(uid, str) or not uid_is_valid(uid):
        raise refused("uid_invalid")
    if not uid.startswith(row.uid_prefix):
        raise refused("uid_prefix", f"uid must start with this key's uid prefix {row.uid_prefix!r}")
    if not isinstance(name, str) or len(name) > NAME_MAX or "\x00" in name:
        raise refused("name_invalid")
    if Device.objects.filter(uid=uid).exists():
        raise refused("uid_taken")
    device = Device(uid=uid, name=name, owner_id=row.owner_id)
    try:
        with transaction.atomic():
            token = device_add(device=device, purge=False)
    except IntegrityError:
        raise refused("uid_taken") from None
    except ValidationError as error:
        problems = " ".join(" ".join(messages) for messages in error.message_dict.values())
        raise refused("uid_invalid", problems) from None
    ProvisioningKey.objects.filter(pk=row.pk).update(devices_claimed=F("devices_claimed") + 1)
    return token, device
