"""Write paths of the devices app: register, rotate, authenticate."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.moments import ms_to_datetime
from devices.attribute_services import (
    AttributesState,
    attributes_reported_apply,
    attributes_to_republish,
)
from devices.attributes import AttributesInvalid
from devices.broker import (
    broker_device_active_set,
    broker_device_register,
    broker_device_remove,
    broker_device_token_set,
    uid_reserved,
)
from devices.events import DeviceEvent, PresenceChange, ReplyEvent, ReportedEvent, StatusEvent
from devices.models import FINISHED, Command, CommandStatus, Device, PresenceEvent
from devices.selectors import uid_is_valid


def token_hash(token: str) -> str:
    """Return the stored form of a device token."""
    return hashlib.sha256(token.encode()).hexdigest()


RESERVED_UID_MESSAGE = "this uid is the name of one of the hub's own MQTT accounts"


def token_new() -> str:
    """Return a new device token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def device_register(*, owner: User, uid: str, name: str = "") -> tuple[Device, str]:
    """Register a device and return it with its token, which is not stored in clear."""
    device = Device(uid=uid, name=name, owner=owner)
    return device, device_add(device=device)


def device_add(*, device: Device, purge: bool = True) -> str:
    """Save a new device with a new token and return the token.

    Where the hub manages the broker, the broker first drops whatever it holds
    under the uid (an earlier owner's session and retained messages), then the
    device's client gets the token, before the transaction commits; a broker
    that does not take it raises BrokerUnavailable and nothing is registered.
    A provisioning claim passes purge=False: the claiming connection holds the
    uid's client id, which the purge would take over, so the answer would be
    lost (a deleted device's uid was purged when it was deleted).
    """
    if uid_reserved(device.uid):
        raise ValidationError({"uid": [RESERVED_UID_MESSAGE]})
    token = token_new()
    device.token_hash = token_hash(token)
    device.full_clean()
    with transaction.atomic():
        device.save(force_insert=True)
        broker_device_register(
            uid=device.uid,
            token=token,
            token_hash=device.token_hash,
            active=device.active,
            purge=purge,
        )
    return token


def device_rotate_token(*, device: Device) -> str:
    """Give the device a new token; the old one stops working (at the broker too).

    At a managed broker the device's connections are closed and its session
    discarded; a broker that does not take the token raises BrokerUnavailable
    and the device keeps its old one.
    """
    token = token_new()
    old = device.token_hash
    try:
        with transaction.atomic():
            device.token_hash = token_hash(token)
            device.save(update_fields=["token_hash"])
            broker_device_token_set(
                uid=device.uid, token=token, token_hash=device.token_hash, active=device.active
            )
    except BaseException:
        device.token_hash = old
        raise
    return token


def device_authenticate(*, uid: str, token: str) -> Device | None:
    """Return the active device with this uid and token, or None."""
    # The shape check keeps NUL bytes and other junk usernames away from the database.
    device = Device.objects.filter(uid=uid, active=True).first() if uid_is_valid(uid) else None
    expected = device.token_hash if device else token_hash("")
    # Compare even for unknown uids so timing does not tell which uids exist.
    matches = hmac.compare_digest(expected, token_hash(token))
    return device if device is not None and matches else None


def device_update(*, device: Device, name: str | None = None, active: bool | None = None) -> Device:
    """Change a device's name or active flag; fields left None stay as they are.

    Disabling closes the device's connections at a managed broker and discards
    its session; a broker that does not take the change raises BrokerUnavailable
    and the device stays as it was.
    """
    fields = []
    before = (device.name, device.active)
    if name is not None:
        device.name = name
        fields.append("name")
    if active is not None:
        device.active = active
        fields.append("active")
    if not fields:
        return device
    try:
        device.full_clean()
        with transaction.atomic():
            device.save(update_fields=fields)
            if active is not None:
                broker_device_active_set(uid=device.uid, active=device.active)
    except BaseException:
        device.name, device.active = before
        raise
    return device


def device_delete(*, device: Device) -> None:
    """Delete a device with its readings, rollups and latest values, and its broker account.

    The broker part runs in device_broker_forget, which devices.receivers calls for
    every deleted device, cascades included; a broker that does not take it raises
    BrokerUnavailable and nothing is deleted.
    """
    with transaction.atomic():
        device.delete()


def device_broker_forget(*, uid: str) -> None:
    """Remove a deleted device from a managed broker: its client, session and retained messages.

    Call inside the transaction that deletes the device, so a broker that does not
    take it (BrokerUnavailable) rolls the deletion back.
    """
    broker_device_remove(uid=uid)


COMMAND_TIMEOUT_DEFAULT_S = 30
COMMAND_TIMEOUT_MAX_S = 3600


def command_create(
    *,
    device: Device,
    method: str,
    params: dict[str, Any],
    timeout: int = COMMAND_TIMEOUT_DEFAULT_S,
    created_by: User | None = None,
) -> Command:
    """Store a pending command; the caller hands it to a bridge once this commits."""
    now = timezone.now()
    return Command.objects.create(
        device=device,
        method=method,
        params=params,
        timeout=timeout,
        created_by=created_by,
        created=now,
        expires_at=now + timedelta(seconds=timeout),
    )


def command_create_for_owner(*, owner_id: int, uid: str, **fields: Any) -> Command | None:
    """Create a command for the owner's device with this uid; None if they own no such device."""
    device = (
        Device.objects.filter(owner_id=owner_id, uid=uid).first() if uid_is_valid(uid) else None
    )
    if device is None:
        return None
    return command_create(device=device, created_by=device.owner, **fields)


def device_is_online(*, device_id: int) -> bool:
    """Read a device's online flag now (after a command commits, not when it was loaded).

    A device that comes online in between has its pending commands handed out by
    the ingest worker; reading late means at worst both hand it out, and the
    device answers a command id once.
    """
    return Device.objects.filter(pk=device_id, online=True).exists()


def command_mark_sent(*, command_id: str, at: datetime) -> Command | None:
    """Record that a bridge published a pending command; None if it moved on meanwhile."""
    updated = Command.objects.filter(id=command_id, status=CommandStatus.PENDING).update(
        status=CommandStatus.SENT, sent_at=at
    )
    return Command.objects.select_related("device").get(id=command_id) if updated else None


def command_reply(
    *, uid: str, command_id: str, reply: object, at: datetime
) -> tuple[Command | None, str | None]:
    """Apply a device's reply; return (the finished command, or None) and a rejection, if any.

    A reply delivered twice (MQTT at least once) matches the stored outcome and is
    ignored quietly; any other reply to a finished command is rejected.
    """
    command = Command.objects.select_related("device").filter(id=command_id).first()
    if command is None or command.device.uid != uid:
        return None, f"no command {command_id!r} for device {uid!r}"
    outcome = _reply_outcome(reply)
    if isinstance(outcome, str):
        return None, outcome
    status, result, error = outcome
    if command.status in FINISHED:
        if (command.status, command.result, command.error) == (status, result, error):
            return None, None
        return None, f"command {command_id!r} is already {command.status}"
    command.status, command.result, command.error = status, result, error
    command.finished_at = at
    command.save(update_fields=["status", "result", "error", "finished_at"])
    return command, None


def json_has_nul(value: object) -> bool:
    """Tell whether a parsed JSON value holds a NUL character, which PostgreSQL cannot store."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _reply_outcome(reply: object) -> tuple[str, Any, str] | str:
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        return 'reply must be {"ok": true, "result": …} or {"ok": false, "error": "…"}'
    if json_has_nul(reply):
        # Refused here, not by the database: a failed ingest transaction would be retried forever.
        return "reply must not contain NUL characters (\\u0000)"
    if reply["ok"]:
        return CommandStatus.SUCCEEDED, reply.get("result"), ""
    error = reply.get("error")
    if not isinstance(error, str):
        return 'a failed reply needs "error" as a string'
    return CommandStatus.FAILED, None, error[:1000]


def commands_expire(*, now: datetime) -> list[Command]:
    """Mark pending and sent commands past their timeout as expired; return them."""
    expired = list(
        Command.objects.select_related("device")
        .filter(status__in=(CommandStatus.PENDING, CommandStatus.SENT), expires_at__lte=now)
        .order_by("expires_at")[:1000]
    )
    if expired:
        Command.objects.filter(
            id__in=[command.id for command in expired],
            status__in=(CommandStatus.PENDING, CommandStatus.SENT),
        ).update(status=CommandStatus.EXPIRED, finished_at=now)
        for command in expired:
            command.status, command.finished_at = CommandStatus.EXPIRED, now
    return expired


def commands_pending(*, device_ids: list[int], now: datetime) -> list[Command]:
    """Return the unexpired pending commands of these devices, oldest first."""
    return list(
        Command.objects.select_related("device")
        .filter(device_id__in=device_ids, status=CommandStatus.PENDING, expires_at__gt=now)
        .order_by("created")
    )


def presence_set(*, device: Device, online: bool, at: datetime, source: str) -> bool:
    """Set a device's online state; record and return whether it changed.

    The conditional update makes concurrent workers agree on who saw the change.
    """
    changed = bool(Device.objects.filter(pk=device.pk, online=not online).update(online=online))
    if source == PresenceEvent.Source.STATUS and not device.reports_status:
        Device.objects.filter(pk=device.pk).update(reports_status=True)
        device.reports_status = True
    device.online = online
    if changed:
        PresenceEvent.objects.create(device=device, online=online, at=at, source=source)
    return changed


def devices_silent_offline(*, now: datetime, after_s: int) -> list[Device]:
    """Mark offline the online devices without a status topic that were silent too long."""
    silent = Device.objects.filter(
        online=True, reports_status=False, last_seen__lt=now - timedelta(seconds=after_s)
    )
    return [
        device
        for device in silent
        if presence_set(device=device, online=False, at=now, source=PresenceEvent.Source.SILENCE)
    ]


@dataclass(slots=True)
class EventsApplied:
    """What a bridge's device events changed, for the caller to announce."""

    # Every change of presence.
    presence: list[PresenceChange] = field(default_factory=list)
    # Commands whose status changed.
    commands: list[Command] = field(default_factory=list)
    # Pending commands of devices that came online: to hand to a bridge now.
    to_publish: list[Command] = field(default_factory=list)
    # (uid, topic, error, reason) for device messages the hub refuses.
    rejected: list[tuple[str, str, str, str]] = field(default_factory=list)
    # Attributes a device reported, as they are now: for the sockets.
    attributes: list[AttributesState] = field(default_factory=list)
    # Attributes of devices that came online: their desired values go to the broker again.
    republish: list[AttributesState] = field(default_factory=list)


def events_apply(*, events: Sequence[DeviceEvent], now: datetime) -> EventsApplied:
    """Apply device events from a bridge: status changes, command replies, commands sent.

    A merge patch a device reported is merged in a transaction of its own (a bad one is
    refused alone). An event may arrive twice (a resent batch); applying it again changes
    nothing (a merge patch applied twice gives the same object).
    """
    applied = EventsApplied()
    uids = {
        event.uid for event in events if isinstance(event, StatusEvent | ReplyEvent | ReportedEvent)
    }
    devices = {device.uid: device for device in Device.objects.filter(uid__in=uids, active=True)}
    came_online: list[int] = []
    for event in events:
        at = ms_to_datetime(event.at_ms)
        if isinstance(event, StatusEvent):
            device = devices.get(event.uid)
            if device is not None and presence_set(
                device=device, online=event.online, at=at, source=PresenceEvent.Source.STATUS
            ):
                applied.presence.append(PresenceChange(device.owner_id, device.uid, event.online))
                if event.online:
                    came_online.append(device.pk)
        elif isinstance(event, ReplyEvent):
            topic = f"devices/{event.uid}/commands/{event.command_id}/reply"
            if event.uid not in devices:
                continue  # unknown or disabled devices are ignored, as for telemetry
            command, rejection = command_reply(
                uid=event.uid, command_id=event.command_id, reply=event.reply, at=at
            )
            if rejection is not None:
                applied.rejected.append((event.uid, topic, rejection, "command_rejected"))
            elif command is not None:
                applied.commands.append(command)
        elif isinstance(event, ReportedEvent):
            device = devices.get(event.uid)
            if device is None:
                continue  # unknown or disabled devices are ignored, as for telemetry
            try:
                with transaction.atomic():
                    state = attributes_reported_apply(device=device, patch=event.patch, at=at)
            except AttributesInvalid as error:
                topic = f"devices/{device.uid}/attributes/reported"
                applied.rejected.append((device.uid, topic, error.detail, error.reason))
            else:
                applied.attributes.append(state)
        else:
            command = command_mark_sent(command_id=event.command_id, at=at)
            if command is not None:
                applied.commands.append(command)
    if came_online:
        applied.to_publish = commands_pending(device_ids=came_online, now=now)
        applied.republish = attributes_to_republish(device_ids=came_online)
    return applied


@dataclass(slots=True)
class Swept:
    """What the periodic sweep changed."""

    expired: list[Command]
    # Devices marked offline because they fell silent.
    silent: list[PresenceChange]


def presence_and_commands_sweep(*, now: datetime, offline_after_s: int) -> Swept:
    """Expire overdue commands and mark long-silent devices offline."""
    with transaction.atomic():
        return Swept(
            expired=commands_expire(now=now),
            silent=[
                PresenceChange(device.owner_id, device.uid, False)
                for device in devices_silent_offline(now=now, after_s=offline_after_s)
            ],
        )
