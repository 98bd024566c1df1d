"""The webhook outbox: each alarm change becomes one Delivery per enabled webhook of its owner.

Written in the transaction that makes the change, so a crash after commit delays a
notification and never loses it; alarms/delivery.py sends them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.contrib.auth import get_user_model

from alarms.documents import alarm_document
from alarms.models import Alarm, Delivery, Webhook

# Webhook event names, one per kind of change (CONTRACT §6).
EVENTS = {
    "raised": "alarm.raised",
    "updated": "alarm.updated",
    "acknowledged": "alarm.acknowledged",
    "cleared": "alarm.cleared",
}


# Owner ids -> {owner id: ids of their enabled webhooks} for those with any.
Webhooks = Callable[[Collection[int]], Mapping[int, list[int]]]


@dataclass(frozen=True, slots=True)
class Notice:
    """One alarm change to notify: its kind, and a copy of the alarm as it was then."""

    alarm: Alarm
    kind: str
    device_uid: str


def delivery_body(*, event: str, delivery: str, document: dict[str, Any]) -> str:
    """Return the exact JSON text POSTed (and signed) for one delivery."""
    return orjson.dumps({"event": event, "delivery": delivery, "alarm": document}).decode()


def deliveries_enqueue(notices: Sequence[Notice], webhooks: Webhooks | None = None) -> set[int]:
    """Write a delivery per (notice, enabled webhook of its owner), in notice order.

    Return the owners who got some: only they need the delivery loop woken. Documents,
    and the names of who acknowledged the alarms, are looked up for those only (most
    batches' changes have no webhook to go to). `webhooks` tells the owners' enabled
    webhooks (evaluation keeps them: alarms/rulebook.py); without it they are read.
    """
    if not notices:
        return set()
    owners = {notice.alarm.owner_id for notice in notices}
    hooks = (webhooks or webhooks_read)(owners)
    if not hooks:
        return set()
    notified = [notice for notice in notices if notice.alarm.owner_id in hooks]
    names = _usernames({notice.alarm.acknowledged_by_id for notice in notified})
    rows = []
    for notice in notified:
        event = EVENTS[notice.kind]
        document = alarm_document(
            notice.alarm,
            device_uid=notice.device_uid,
            acknowledged_by=names.get(notice.alarm.acknowledged_by_id),
        )
        for hook_id in hooks[notice.alarm.owner_id]:
            delivery = uuid.uuid4()
            rows.append(
                Delivery(
                    uid=delivery,
                    webhook_id=hook_id,
                    alarm_id=notice.alarm.pk,
                    event=event,
                    body=delivery_body(event=event, delivery=str(delivery), document=document),
                )
            )
    Delivery.objects.bulk_create(rows)
    return set(hooks)


def webhooks_read(owners: Collection[int]) -> dict[int, list[int]]:
    """Return owner id -> ids of their enabled webhooks, for those of the owners with any."""
    hooks: dict[int, list[int]] = {}
    for hook_id, owner_id in (
        Webhook.objects.filter(owner_id__in=owners, enabled=True)
        .order_by("id")
        .values_list("id", "owner_id")
    ):
        hooks.setdefault(owner_id, []).append(hook_id)
    return hooks


def _usernames(user_ids: set[int | None]) -> dict[int | None, str]:
    """Return the usernames of these users (None: nobody) in one query, or none if not asked."""
    wanted = {user_id for user_id in user_ids if user_id is not None}
    if not wanted:
        return {}
    user = get_user_model()
    return dict(user.objects.filter(pk__in=wanted).values_list("pk", user.USERNAME_FIELD))
