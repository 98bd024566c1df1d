"""The embedded broker's ties to the hub: device checks, limits from settings, changes made here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from bridges.mqtt.broker import ConnectionLimits
from bridges.mqtt.broker_grants import DeviceGrant, DeviceRecord, KeyGrant
from bridges.mqtt.provision import ClaimAnswer
from core.conf import hub_settings
from devices.broker import broker_managed
from devices.models import Device
from devices.selectors import device_credentials
from devices.services import device_authenticate
from provisioning.broker import broker_key_answer_close
from provisioning.mqtt import provision_request_answer
from provisioning.selectors import keys_unrevoked
from provisioning.services import key_authenticate

# Saving these fields can end a device's broker session.
_CREDENTIAL_FIELDS: Final = frozenset({"uid", "token_hash", "active"})
_DISPATCH_UID: Final = "hub.broker.device_changed"


async def device_check(uid: str, token: str) -> DeviceGrant | None:
    """Return the grant of the active device with this uid and token (for the broker), or None."""
    device = await database_sync_to_async(device_authenticate)(uid=uid, token=token)
    return None if device is None else DeviceGrant(device.pk, device.token_hash)


async def key_check(key: str, secret: str) -> KeyGrant | None:
    """Return the grant of the unrevoked provisioning key with this secret, or None."""
    row = await database_sync_to_async(key_authenticate)(key=key, secret=secret)
    return None if row is None else KeyGrant(row.key)


async def key_claim_answer(key: str, secret: str, uid: str, payload: bytes) -> bytes:
    """Claim `uid` with the key a session connected with; return the answer's payload."""
    answer = await database_sync_to_async(provision_request_answer)(
        uid=uid, payload=payload, key=key, secret=secret
    )
    return answer.payload


async def key_claim_answer_managed(uid: str, payload: bytes) -> ClaimAnswer:
    """Answer a claim that reached `hub bridge` (credentials in the payload).

    At a managed broker the key's accounts may receive this one answer, until it is sent.
    """
    managed = broker_managed()
    answer = await database_sync_to_async(provision_request_answer)(
        uid=uid, payload=payload, answer_open=managed
    )
    key = answer.opened_for
    if key is None:
        return ClaimAnswer(answer.payload)

    async def close() -> None:
        await database_sync_to_async(broker_key_answer_close)(key=key, uid=uid)

    return ClaimAnswer(answer.payload, after=close, retain=True)


async def device_lookup(uids: list[str]) -> dict[str, DeviceRecord]:
    """Return the device rows with these uids as the broker compares its sessions with them."""
    rows = await database_sync_to_async(device_credentials)(uids=uids)
    return {uid: DeviceRecord(*row) for uid, row in rows.items()}


async def key_lookup(keys: list[str]) -> set[str]:
    """Return those of `keys` still unrevoked, as the broker checks its key sessions."""
    return await database_sync_to_async(keys_unrevoked)(keys=keys)


def broker_limits() -> ConnectionLimits:
    """Return the embedded broker's limits from the HUB settings."""
    return ConnectionLimits(
        max_connections=hub_settings.MQTT_MAX_CONNECTIONS,
        connect_timeout_s=hub_settings.MQTT_CONNECT_TIMEOUT_SECONDS,
        max_packet_bytes=hub_settings.MQTT_MAX_PACKET_BYTES,
        max_subscriptions=hub_settings.MQTT_MAX_SUBSCRIPTIONS,
        max_queued_messages=hub_settings.MQTT_MAX_QUEUED_MESSAGES,
        max_queued_bytes=hub_settings.MQTT_MAX_QUEUED_BYTES,
    )


def device_changes_follow(notify: Callable[[str], None]) -> Callable[[], None]:
    """Call `notify(uid)` after each commit here that adds, deletes or re-keys a device.

    Signals, though STYLE.md keeps logic out of them: the admin, a user deleted
    with their devices (a cascade) and the services all change devices, and the
    broker must hear of each at once. The receivers only pass the uid on; the
    broker's periodic check covers changes made by other processes.
    Returns a function that disconnects them.
    """

    def saved(*, instance: Device, created: bool, update_fields: Any, **kwargs: Any) -> None:
        if created or update_fields is None or not _CREDENTIAL_FIELDS.isdisjoint(update_fields):
            uid = instance.uid
            transaction.on_commit(lambda: notify(uid), using=kwargs.get("using"))

    def deleted(*, instance: Device, **kwargs: Any) -> None:
        uid = instance.uid
        transaction.on_commit(lambda: notify(uid), using=kwargs.get("using"))

    post_save.connect(saved, sender=Device, weak=False, dispatch_uid=_DISPATCH_UID)
    post_delete.connect(deleted, sender=Device, weak=False, dispatch_uid=_DISPATCH_UID)

    def unfollow() -> None:
        post_save.disconnect(sender=Device, dispatch_uid=_DISPATCH_UID)
        post_delete.disconnect(sender=Device, dispatch_uid=_DISPATCH_UID)

    return unfollow
