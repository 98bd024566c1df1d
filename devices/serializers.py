"""JSON shapes of the device endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers

from core.moments import format_moment
from devices.models import UID_PATTERN, Device

UID_MESSAGE = "must be 1 to 64 letters, digits, _ or -, starting with a letter or digit"
DUPLICATE_UID_MESSAGE = "a device with this uid already exists"


class TimestampField(serializers.DateTimeField):
    """A read-only datetime rendered as RFC 3339 UTC with milliseconds and Z."""

    def to_representation(self, value: datetime) -> str:
        return format_moment(value)


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
        fields: tuple[str, ...] = ("uid", "name", "active", "online", "last_seen", "created")
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


# Shapes for the OpenAPI document only.


class DetailSerializer(serializers.Serializer[Any]):
    """An error without a field: 401, 403, 404, 405, 406, 415 or 429."""

    detail = serializers.CharField()


class CredentialsSerializer(serializers.Serializer[Any]):
    """What POST /auth/token/ takes."""

    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"})


class TokenSerializer(serializers.Serializer[Any]):
    """An API token: send it as `Authorization: Token <token>`."""

    token = serializers.CharField()


class DeviceTokenSerializer(serializers.Serializer[Any]):
    """A device's new token, shown once: its MQTT password."""

    uid = serializers.CharField()
    token = serializers.CharField()


class DeviceCreatedSerializer(DeviceSerializer):
    """A registered device with its token, shown this once."""

    token = serializers.CharField(read_only=True, help_text="The device's MQTT password.")

    class Meta(DeviceSerializer.Meta):
        fields = (*DeviceSerializer.Meta.fields, "token")
        read_only_fields = fields


# 400: field name -> messages (`detail` for a body that is not JSON).
VALIDATION_ERRORS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "string"},
            {"type": "object"},
        ]
    },
}
_ERROR_DESCRIPTIONS = {
    400: "A parameter or field is wrong: each name maps to its messages.",
    401: "No credentials, or bad ones.",
    403: "A session request without its CSRF token.",
    404: "No such object among the user's own.",
    429: "Too many requests: see Retry-After.",
    503: "The hub is busy with other history requests: see Retry-After.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """Return the documented error responses for these status codes."""
    examples = {
        400: [OpenApiExample("field errors", value={"start": ["must be before end"]})],
        401: [OpenApiExample("no token", value={"detail": "Invalid token."})],
        404: [OpenApiExample("not yours", value={"detail": "no such device"})],
        429: [
            OpenApiExample(
                "throttled",
                value={"detail": "Request was throttled. Expected available in 7 seconds."},
            )
        ],
    }
    return {
        code: OpenApiResponse(
            VALIDATION_ERRORS_SCHEMA if code == 400 else DetailSerializer,
            description=_ERROR_DESCRIPTIONS[code],
            examples=examples.get(code, []),
        )
        for code in codes
    }
