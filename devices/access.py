"""Which devices a request may see: the user's own, narrowed by an API key's grant.

Every REST view and the WebSocket consumer choose devices through
`devices_visible` (or `visible_devices` for a DRF request), so a key limited to
some devices sees the others as absent (404), whatever the endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import PermissionDenied

from devices.models import Device

LIMITED_KEY_MESSAGE = (
    "this API key is limited to some devices; account-wide changes need an unlimited key, "
    "your API token or your session"
)


@dataclass(frozen=True)
class KeyGrant:
    """What an API key allows: its id, whether it only reads, and its devices (None: all)."""

    key_id: int
    read_only: bool
    device_ids: frozenset[int] | None
    device_uids: frozenset[str] | None

    @property
    def limited(self) -> bool:
        """Tell whether the key sees only some of its owner's devices."""
        return self.device_ids is not None


def request_grant(request: Any) -> KeyGrant | None:
    """Return the API key grant a request authenticated with, or None (session, user token)."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, KeyGrant) else None


def devices_visible(*, user: Any, grant: KeyGrant | None) -> QuerySet[Device]:
    """Return the devices this user, through this grant (None: no key), may see."""
    devices = Device.objects.filter(owner_id=user.pk)
    if grant is not None and grant.device_ids is not None:
        devices = devices.filter(id__in=sorted(grant.device_ids))
    return devices


def visible_devices(request: Any) -> QuerySet[Device]:
    """Return the devices a DRF request may see: the user's own, narrowed by its API key."""
    return devices_visible(user=request.user, grant=request_grant(request))


def limited_devices(request: Any) -> QuerySet[Device] | None:
    """Return the visible devices when the request's key is limited to some; None otherwise.

    For what is not a device but belongs to some (alarms, rules): None means the
    owner's all, with fleet-wide ones (no device) included.
    """
    grant = request_grant(request)
    if grant is None or not grant.limited:
        return None
    return visible_devices(request)


def visible_uids(request: Any, uids: list[str] | None) -> list[str] | None:
    """Narrow a list of wanted uids (None: every device) to the request's key's devices."""
    grant = request_grant(request)
    if grant is None or grant.device_uids is None:
        return uids
    if uids is None:
        return sorted(grant.device_uids)
    return [uid for uid in uids if uid in grant.device_uids]


def refuse_limited_key(request: Any) -> None:
    """Refuse (403) an account-wide action to a key limited to some devices."""
    grant = request_grant(request)
    if grant is not None and grant.limited:
        raise PermissionDenied(LIMITED_KEY_MESSAGE)
