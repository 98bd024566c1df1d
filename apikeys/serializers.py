"""JSON shapes of the API key endpoints; validation names the field."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apikeys.models import ApiKey
from core.conf import hub_settings
from core.moments import format_moment
from devices.models import Device
from devices.selectors import uid_is_valid
from devices.serializers import StrictCharField


def key_state(key: ApiKey, now: datetime) -> str:
    """Return `active`, `revoked` or `expired`."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires is not None and key.expires <= now:
        return "expired"
    return "active"


def api_key_data(key: ApiKey, *, now: datetime | None = None) -> dict[str, Any]:
    """Return a key as the API shows it: never its secret."""
    moment = now or timezone.now()
    return {
        "id": key.pk,
        "name": key.name,
        "prefix": f"hub_{key.prefix}",
        "scope": key.scope,
        "devices": sorted(device.uid for device in key.devices.all()) if key.limited else None,
        "expires": format_moment(key.expires),
        "state": key_state(key, moment),
        "revoked_at": format_moment(key.revoked_at),
        "last_used_at": format_moment(key.last_used_at),
        "created": format_moment(key.created),
    }


@extend_schema_field({"type": "array", "items": {"type": "string"}, "nullable": True})
class UidListField(serializers.Field):  # type: ignore[type-arg]
    """A JSON list of device uid strings; one message for the field, never per item."""

    default_error_messages = {"invalid": "must be a list of device uids, or null for every device"}

    def to_internal_value(self, data: Any) -> list[str]:
        if not isinstance(data, list) or not all(isinstance(uid, str) for uid in data):
            self.fail("invalid")
        return list(data)

    def to_representation(self, value: Any) -> Any:
        return value


class ApiKeyCreateSerializer(serializers.Serializer[Any]):
    """What creating a key takes: name, scope, devices (null: all), expiry (null: none)."""

    name = StrictCharField(max_length=100)
    scope = serializers.ChoiceField(choices=ApiKey.Scope.choices)
    devices = UidListField(allow_null=True, required=False, default=None)
    expires = serializers.DateTimeField(allow_null=True, required=False, default=None)

    def validate_devices(self, uids: list[str] | None) -> list[Device] | None:
        """Return the owner's devices named; refuse unknown ones, none and too many."""
        if uids is None:
            return None
        if not uids:
            raise serializers.ValidationError("name at least one device, or null for every device")
        limit = hub_settings.API_KEY_MAX_DEVICES
        if len(uids) > limit:
            raise serializers.ValidationError(
                f"at most {limit} devices per key (HUB_API_KEY_MAX_DEVICES)"
            )
        wanted = set(uids)
        owner = self.context["owner"]
        found = list(
            Device.objects.filter(owner=owner, uid__in=[u for u in wanted if uid_is_valid(u)])
        )
        unknown = sorted(wanted - {device.uid for device in found})
        if unknown:
            shown = ", ".join(repr(uid[:64]) for uid in unknown[:10])
            raise serializers.ValidationError(f"no such device: {shown}")
        return found

    def validate_expires(self, expires: datetime | None) -> datetime | None:
        """Refuse an expiry that has passed."""
        if expires is not None and expires <= timezone.now():
            raise serializers.ValidationError("must be in the future")
        return expires


class ApiKeySerializer(serializers.Serializer[Any]):
    """A key as listed (OpenAPI shape only; api_key_data renders it)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="`hub_` and the key's public lookup part.")
    scope = serializers.ChoiceField(choices=ApiKey.Scope.choices)
    devices = serializers.ListField(child=serializers.CharField(), allow_null=True)
    expires = serializers.DateTimeField(allow_null=True)
    state = serializers.ChoiceField(choices=["active", "revoked", "expired"])
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(
        allow_null=True, help_text="Updated at most once a minute."
    )
    created = serializers.DateTimeField()


class ApiKeyCreatedSerializer(ApiKeySerializer):
    """A new key with its text, shown this once (OpenAPI shape only)."""

    key = serializers.CharField(help_text="Send as `Authorization: Bearer <key>`; shown once.")
