"""The one signal receiver of the devices app: a deleted device leaves the managed broker.

STYLE.md keeps logic out of signals, and device_delete is the way to delete a
device. But a device is also deleted by cascade — its owner deleted in the
admin, from a shell with `User.delete()`, by a queryset — and Django reaches no
service then; post_delete is the one hook it calls for every deleted row,
cascaded ones included, inside the deleting transaction. So this receiver only
hands the uid to the devices service, which raises when the broker does not
take it and so rolls the whole deletion back.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete
from django.dispatch import receiver

from devices.models import Device
from devices.services import device_broker_forget


@receiver(post_delete, sender=Device, dispatch_uid="devices.device_broker_forget")
def device_deleted(sender: type[Device], instance: Device, **kwargs: Any) -> None:
    """Remove the deleted device's broker client, session and retained messages."""
    device_broker_forget(uid=instance.uid)
