"""JSON shapes of the alarm endpoints; each validation error names its field (CONTRACT §6)."""

from __future__ import annotations

import math
import re
from typing import Any, cast

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alarms.addresses import AddressRefused, url_check
from alarms.documents import alarm_document
from alarms.models import Alarm, AlarmEvent, AlarmRule, Condition, Delivery, Severity, Webhook
from core.conf import hub_settings
from core.moments import format_moment
from devices.access import limited_devices, visible_devices
from devices.selectors import uid_is_valid
from devices.serializers import StrictCharField

# SenML's name rule, as the codec applies it to metrics (CONTRACT §2).
METRIC_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
# Longest `for` and `silence`: 30 days.
MAX_SECONDS = 30 * 86_400
# Which optional parameters each condition takes; the others must be absent or null.
PARAMETERS: dict[str, tuple[str, ...]] = {
    Condition.ABOVE: ("threshold",),
    Condition.BELOW: ("threshold",),
    Condition.OUTSIDE: ("low", "high"),
    Condition.EQUALS: ("value",),
    Condition.NO_DATA: ("silence",),
}
OPTIONAL: dict[str, tuple[str, ...]] = {Condition.ABOVE: ("clear",), Condition.BELOW: ("clear",)}
ALL_PARAMETERS = ("threshold", "low", "high", "value", "silence", "clear")


# A reading value as sent, or what an `equals` rule compares with.
VALUE_SCHEMA: dict[str, Any] = {
    "oneOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}],
    "nullable": True,
}


@extend_schema_field({"type": "number", "nullable": True})
class NumberField(serializers.Field):  # type: ignore[type-arg]
    """A finite JSON number (not a boolean, not a string), as a float."""

    default_error_messages = {"invalid": "must be a finite number"}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        try:
            number = float(data)
        except OverflowError:
            self.fail("invalid")
        if not math.isfinite(number):
            self.fail("invalid")
        return number

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(VALUE_SCHEMA)
class MatchValueField(serializers.Field):  # type: ignore[type-arg]
    """What `equals` compares with: a boolean, a string or a finite number."""

    default_error_messages = {"invalid": "must be a boolean, a string or a finite number"}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool):
            return data
        if isinstance(data, str):
            if len(data) > hub_settings.MAX_STRING_LENGTH or "\x00" in data:
                raise serializers.ValidationError(
                    f"strings are at most {hub_settings.MAX_STRING_LENGTH} characters, no NUL"
                )
            return data
        if isinstance(data, int | float) and math.isfinite(float(data)):
            return data
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


class RuleSerializer(serializers.Serializer[AlarmRule]):
    """An alarm rule: `{"name", "device", "metric", "condition", …, "severity", "enabled"}`."""

    id = serializers.IntegerField(read_only=True)
    name = StrictCharField(max_length=128)
    device = StrictCharField(max_length=64, allow_null=True, required=False, default=None)
    metric = StrictCharField(max_length=128)
    condition = serializers.ChoiceField(choices=Condition.choices)
    threshold = NumberField(allow_null=True, required=False)
    low = NumberField(allow_null=True, required=False)
    high = NumberField(allow_null=True, required=False)
    value = MatchValueField(allow_null=True, required=False)
    silence = serializers.IntegerField(
        allow_null=True, required=False, min_value=1, max_value=MAX_SECONDS
    )
    for_seconds = serializers.IntegerField(
        source="for_seconds", required=False, default=0, min_value=0, max_value=MAX_SECONDS
    )
    clear = NumberField(allow_null=True, required=False)
    severity = serializers.ChoiceField(choices=Severity.choices)
    enabled = serializers.BooleanField(required=False, default=True)
    created = serializers.SerializerMethodField()
    updated = serializers.SerializerMethodField()

    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        """Name `for_seconds` "for" on the wire (a Python keyword, so not an attribute)."""
        fields = super().get_fields()
        fields["for"] = fields.pop("for_seconds")
        return fields

    def get_created(self, rule: AlarmRule) -> str | None:
        return format_moment(rule.created)

    def get_updated(self, rule: AlarmRule) -> str | None:
        return format_moment(rule.updated)

    def to_representation(self, rule: AlarmRule) -> dict[str, Any]:
        data = super().to_representation(rule)
        data["device"] = rule.device.uid if rule.device is not None else None
        return dict(data)

    def validate_metric(self, metric: str) -> str:
        if not METRIC_PATTERN.fullmatch(metric):
            raise serializers.ValidationError(
                "must be 1 to 128 letters, digits or _ . : / -, starting with a letter or digit"
            )
        return metric

    def validate_device(self, uid: str | None) -> Any:
        request = self.context["request"]
        if uid is None:
            if limited_devices(request) is not None:
                raise serializers.ValidationError(
                    "this API key is limited to some devices: name one of them"
                )
            return None
        device = visible_devices(request).filter(uid=uid).first() if uid_is_valid(uid) else None
        if device is None:
            raise serializers.ValidationError("no such device")
        return device

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Check the condition's parameters together; unused ones of an old condition are reset."""
        rule = self.instance
        # A new rule has its condition (a required field), an updated one its rule's.
        condition = cast(str, attrs.get("condition", rule.condition if rule is not None else None))
        needed = PARAMETERS[condition]
        allowed = needed + OPTIONAL.get(condition, ())
        merged: dict[str, Any] = {}
        for name in ALL_PARAMETERS:
            given = name in attrs and attrs[name] is not None
            if name not in allowed:
                if given:
                    raise serializers.ValidationError(
                        {name: [f"not used by condition {condition}"]}
                    )
                merged[name] = None
            elif name in attrs:
                merged[name] = attrs[name]
            else:
                merged[name] = getattr(rule, name) if rule is not None else None
        for name in needed:
            if merged[name] is None:
                raise serializers.ValidationError({name: [f"required by condition {condition}"]})
        for_seconds = attrs.get("for_seconds", rule.for_seconds if rule is not None else 0)
        if condition == Condition.NO_DATA and for_seconds:
            raise serializers.ValidationError({"for": ["not used by condition no_data"]})
        if condition == Condition.OUTSIDE and not merged["low"] < merged["high"]:
            raise serializers.ValidationError({"high": ["must be greater than low"]})
        clear, threshold = merged["clear"], merged["threshold"]
        if clear is not None and condition == Condition.ABOVE and clear > threshold:
            raise serializers.ValidationError({"clear": ["must be at most the threshold"]})
        if clear is not None and condition == Condition.BELOW and clear < threshold:
            raise serializers.ValidationError({"clear": ["must be at least the threshold"]})
        return {**attrs, **merged}


class EventSerializer(serializers.ModelSerializer[AlarmEvent]):
    """One change of an alarm: who (null: the rule) did what when."""

    at = serializers.SerializerMethodField()
    user = serializers.SerializerMethodField()

    class Meta:
        model = AlarmEvent
        fields = ("kind", "at", "user", "value")
        read_only_fields = fields

    def get_at(self, event: AlarmEvent) -> str | None:
        return format_moment(event.at)

    def get_user(self, event: AlarmEvent) -> str | None:
        return event.user.get_username() if event.user is not None else None


def alarm_data(alarm: Alarm) -> dict[str, Any]:
    """Return an alarm as REST shows it (device and acknowledged_by selected with it)."""
    by = alarm.acknowledged_by
    return alarm_document(
        alarm, device_uid=alarm.device.uid, acknowledged_by=by.get_username() if by else None
    )


class AlarmFilterSerializer(serializers.Serializer[Any]):
    """The alarm list's query parameters."""

    state = serializers.ChoiceField(choices=Alarm.State.choices, required=False)
    acknowledged = serializers.BooleanField(required=False, allow_null=False)
    device = StrictCharField(max_length=64, required=False)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    rule = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class DeliverySerializer(serializers.ModelSerializer[Delivery]):
    """One delivery of one alarm change to a webhook, and how it went."""

    delivery = serializers.UUIDField(source="uid", read_only=True)
    alarm = serializers.IntegerField(source="alarm_id", read_only=True)
    created = serializers.SerializerMethodField()
    last_attempt = serializers.SerializerMethodField()
    next_attempt = serializers.SerializerMethodField()
    delivered_at = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = (
            "delivery",
            "event",
            "alarm",
            "state",
            "attempts",
            "created",
            "last_attempt",
            "next_attempt",
            "delivered_at",
            "last_status",
            "last_error",
        )
        read_only_fields = fields

    def get_created(self, delivery: Delivery) -> str | None:
        return format_moment(delivery.created)

    def get_last_attempt(self, delivery: Delivery) -> str | None:
        return format_moment(delivery.last_attempt)

    def get_next_attempt(self, delivery: Delivery) -> str | None:
        if delivery.state != Delivery.State.PENDING:
            return None
        return format_moment(delivery.next_attempt)

    def get_delivered_at(self, delivery: Delivery) -> str | None:
        return format_moment(delivery.delivered_at)


class WebhookSerializer(serializers.Serializer[Webhook]):
    """A webhook: `{"url", "secret", "enabled"}`; the secret is shown only when created."""

    id = serializers.IntegerField(read_only=True)
    url = serializers.URLField(max_length=2048)
    secret = StrictCharField(max_length=256, min_length=16, write_only=True, required=False)
    enabled = serializers.BooleanField(required=False, default=True)
    created = serializers.SerializerMethodField()

    def get_created(self, webhook: Webhook) -> str | None:
        return format_moment(webhook.created)

    def validate_url(self, url: str) -> str:
        """Refuse URLs whose host is not public (unless HUB_WEBHOOK_ALLOW_PRIVATE)."""
        try:
            url_check(url)
        except AddressRefused as error:
            raise serializers.ValidationError(str(error)) from None
        return url
