"""JSON shapes of the device endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from devices.models import UID_PATTERN, Device

UID_MESSAGE = "must be 1 to 64 letters, digits, _ or -, starting with a letter or digit"
DUPLICATE_UID_MESSAGE = "a device with this uid already exists"


def format_datetime(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with milliseconds and Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TimestampField(serializers.DateTimeField):
    """A read-only datetime rendered as RFC 3339 UTC with milliseconds and Z."""

    def to_representation(self, value: datetime) -> str:
        return format_datetime(value)


class StrictCharField(serializers.CharField):
    """A CharField that takes only JSON strings, not numbers or booleans turned into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class DeviceSerializer(serializers.ModelSerializer[Device]):
    """A device as the API shows it; never its token."""

    last_seen = TimestampField(read_only=True, allow_null=True)
    created = TimestampField(read_only=True)

    class Meta:
        model = Device
        fields = ("uid", "name", "active", "online", "last_seen", "created")
        read_only_fields = fields


class DeviceCreateSerializer(serializers.Serializer[Any]):
    """What registering a device takes: a uid that is free and an optional name."""

    uid = StrictCharField(
        max_length=64,
        trim_whitespace=False,
        validators=[RegexValidator(UID_PATTERN, UID_MESSAGE)],
    )
    name = StrictCharField(max_length=128, allow_blank=True, default="")

    def validate_uid(self, uid: str) -> str:
        """Refuse a uid that is taken; it runs after the shape check, so no junk is queried."""
        if Device.objects.filter(uid=uid).exists():
            raise serializers.ValidationError(DUPLICATE_UID_MESSAGE)
        return uid


class DeviceUpdateSerializer(serializers.Serializer[Any]):
    """What PATCH may change: the name and the active flag."""

    name = StrictCharField(max_length=128, allow_blank=True, required=False)
    active = serializers.BooleanField(required=False)
