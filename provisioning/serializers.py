"""JSON shapes of the provisioning endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from devices.serializers import StrictCharField, TimestampField
from provisioning.models import ProvisioningKey
from provisioning.services import NAME_MAX


class KeySerializer(serializers.ModelSerializer[ProvisioningKey]):
    """A provisioning key as the API shows it; never its secret."""

    expires = TimestampField(read_only=True, allow_null=True)
    revoked_at = TimestampField(read_only=True, allow_null=True)
    created = TimestampField(read_only=True)
    revoked = serializers.SerializerMethodField()

    class Meta:
        model = ProvisioningKey
        fields: tuple[str, ...] = (
            "id",
            "key",
            "name",
            "max_devices",
            "expires",
            "uid_prefix",
            "devices_claimed",
            "revoked",
            "revoked_at",
            "created",
        )
        read_only_fields = fields

    def get_revoked(self, key: ProvisioningKey) -> bool:
        """Tell whether the key was revoked."""
        return key.revoked_at is not None


class KeyCreateSerializer(serializers.Serializer[Any]):
    """What creating a key takes; every field is optional."""

    name = StrictCharField(max_length=128, allow_blank=True, default="")
    max_devices = serializers.IntegerField(
        min_value=1, max_value=2_000_000_000, allow_null=True, default=None
    )
    expires = serializers.DateTimeField(allow_null=True, default=None)
    uid_prefix = StrictCharField(max_length=63, allow_blank=True, default="", trim_whitespace=False)


class KeyCreatedSerializer(KeySerializer):
    """A new key with its secret, shown this once."""

    secret = serializers.CharField(read_only=True)

    class Meta(KeySerializer.Meta):
        fields = (*KeySerializer.Meta.fields, "secret")
        read_only_fields = fields


class ClaimSerializer(serializers.Serializer[Any]):
    """What a device sends to claim its credentials."""

    key = StrictCharField(max_length=64, trim_whitespace=False)
    secret = StrictCharField(max_length=256, trim_whitespace=False)
    uid = StrictCharField(max_length=64, trim_whitespace=False)
    name = StrictCharField(max_length=NAME_MAX, allow_blank=True, default="")


class ClaimedSerializer(serializers.Serializer[Any]):
    """A claimed device's uid and token (its MQTT password), shown this once."""

    uid = serializers.CharField()
    token = serializers.CharField()


class RefusalSerializer(serializers.Serializer[Any]):
    """A refused claim: its code (`key_revoked`, `uid_taken`, …) and a sentence."""

    error = serializers.CharField()
    detail = serializers.CharField()
