"""The OpenAPI description of the alarm endpoints (/api/schema/), applied to the views."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers

from alarms.api import (
    AlarmAckView,
    AlarmClearView,
    AlarmDetailView,
    AlarmListView,
    RuleDetailView,
    RuleListView,
    WebhookDetailView,
    WebhookListView,
)
from alarms.models import Alarm, Severity
from alarms.serializers import (
    VALUE_SCHEMA,
    AlarmFilterSerializer,
    DeliverySerializer,
    EventSerializer,
    MatchValueField,
    RuleSerializer,
    WebhookSerializer,
)
from devices.serializers import error_responses
from devices.views import FORMAT_PARAMETER

RULE_ID = OpenApiParameter("rule_id", int, OpenApiParameter.PATH, description="The rule's id.")
ALARM_ID = OpenApiParameter("alarm_id", int, OpenApiParameter.PATH, description="The alarm's id.")
WEBHOOK_ID = OpenApiParameter(
    "webhook_id", int, OpenApiParameter.PATH, description="The webhook's id."
)
CURSOR = OpenApiParameter("cursor", str, description="Opaque; use the `next` link as given.")
FILTERS = [
    OpenApiParameter("state", str, enum=list(Alarm.State.values), description="active or cleared"),
    OpenApiParameter("acknowledged", bool, description="true or false"),
    OpenApiParameter("device", str, description="A device uid."),
    OpenApiParameter("severity", str, enum=list(Severity.values), description="The severity."),
    OpenApiParameter("rule", int, description="A rule id."),
]
RULE_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "name": "Boiler too hot",
    "device": "boiler-1",
    "metric": "temperature",
    "condition": "above",
    "threshold": 90.0,
    "low": None,
    "high": None,
    "value": None,
    "silence": None,
    "for": 60,
    "clear": 85.0,
    "severity": "critical",
    "enabled": True,
    "created": "2026-11-26T06:00:00.000Z",
    "updated": "2026-11-26T06:00:00.000Z",
}
ALARM_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "rule": 7,
    "name": "Boiler too hot",
    "device": "boiler-1",
    "metric": "temperature",
    "severity": "critical",
    "state": "active",
    "acknowledged": False,
    "started": "2026-11-26T06:40:00.000Z",
    "cleared": None,
    "acknowledged_at": None,
    "acknowledged_by": None,
    "value": 91.5,
    "peak": 93.0,
}
EVENTS_EXAMPLE = [
    {"kind": "raised", "at": "2026-11-26T06:40:00.000Z", "user": None, "value": 91.5},
    {"kind": "updated", "at": "2026-11-26T06:41:00.000Z", "user": None, "value": 93.0},
]
DELIVERY_EXAMPLE = {
    "delivery": "0b9f4a4e-8a55-4a3d-9a61-1f3c2d0e5b7a",
    "event": "alarm.raised",
    "alarm": 42,
    "state": "delivered",
    "attempts": 2,
    "created": "2026-11-26T06:40:00.020Z",
    "last_attempt": "2026-11-26T06:40:01.100Z",
    "next_attempt": None,
    "delivered_at": "2026-11-26T06:40:01.150Z",
    "last_status": 200,
    "last_error": "",
}
WEBHOOK_EXAMPLE = {
    "id": 3,
    "url": "https://example.com/hooks/hub",
    "enabled": True,
    "created": "2026-11-26T06:00:00.000Z",
    "deliveries": [DELIVERY_EXAMPLE],
    "last_error": None,
}

_alarm_fields: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "id": serializers.IntegerField(),
    "rule": serializers.IntegerField(),
    "name": serializers.CharField(),
    "device": serializers.CharField(),
    "metric": serializers.CharField(),
    "severity": serializers.ChoiceField(choices=Severity.choices),
    "state": serializers.ChoiceField(choices=Alarm.State.choices),
    "acknowledged": serializers.BooleanField(),
    "started": serializers.DateTimeField(),
    "cleared": serializers.DateTimeField(allow_null=True),
    "acknowledged_at": serializers.DateTimeField(allow_null=True),
    "acknowledged_by": serializers.CharField(allow_null=True),
    "value": MatchValueField(allow_null=True, help_text="The reading that raised it."),
    "peak": MatchValueField(allow_null=True, help_text="The most extreme value while active."),
}
AlarmDoc = inline_serializer(name="Alarm", fields=_alarm_fields)
AlarmDetailDoc = inline_serializer(
    name="AlarmDetail", fields={**_alarm_fields, "events": EventSerializer(many=True)}
)
AlarmPageDoc = inline_serializer(
    name="AlarmPage",
    fields={
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": AlarmDoc.__class__(many=True),
    },
)
WebhookDoc = inline_serializer(
    name="Webhook",
    fields={
        "id": serializers.IntegerField(),
        "url": serializers.URLField(),
        "enabled": serializers.BooleanField(),
        "created": serializers.DateTimeField(),
        "deliveries": DeliverySerializer(many=True),
        "last_error": serializers.CharField(allow_null=True),
    },
)
WebhookCreatedDoc = inline_serializer(
    name="WebhookCreated",
    fields={**WebhookDoc.fields, "secret": serializers.CharField(help_text="Shown this once.")},
)
_: object = VALUE_SCHEMA  # the value schema is applied through MatchValueField


def _ok(serializer: Any, description: str, example: Any, code: int = 200) -> dict[int, Any]:
    return {
        code: OpenApiResponse(
            serializer, description=description, examples=[OpenApiExample("example", example)]
        )
    }


extend_schema_view(
    get=extend_schema(
        operation_id="alarm_rules_list",
        summary="Your alarm rules",
        parameters=[FORMAT_PARAMETER],
        responses={
            **_ok(RuleSerializer(many=True), "Oldest first.", [RULE_EXAMPLE]),
            **error_responses(400, 401, 429),
        },
        tags=["alarms"],
    ),
    post=extend_schema(
        operation_id="alarm_rules_create",
        summary="Create an alarm rule",
        description="`device` null watches every device you have, now or later. Each condition "
        "takes its own parameters: above/below `threshold` (and `clear`), outside `low` and "
        "`high`, equals `value`, no_data `silence` (seconds). At most HUB_ALARM_RULES_PER_USER.",
        parameters=[FORMAT_PARAMETER],
        request=RuleSerializer,
        responses={
            **_ok(RuleSerializer, "Created.", RULE_EXAMPLE, 201),
            **error_responses(400, 401, 403, 429),
        },
        examples=[
            OpenApiExample(
                "too hot for a minute",
                value={
                    "name": "Boiler too hot",
                    "device": "boiler-1",
                    "metric": "temperature",
                    "condition": "above",
                    "threshold": 90,
                    "for": 60,
                    "clear": 85,
                    "severity": "critical",
                },
                request_only=True,
            )
        ],
        tags=["alarms"],
    ),
)(RuleListView)
extend_schema_view(
    get=extend_schema(
        operation_id="alarm_rules_retrieve",
        summary="One of your alarm rules",
        parameters=[RULE_ID, FORMAT_PARAMETER],
        responses={
            **_ok(RuleSerializer, "The rule.", RULE_EXAMPLE),
            **error_responses(400, 401, 404, 429),
        },
        tags=["alarms"],
    ),
    patch=extend_schema(
        operation_id="alarm_rules_update",
        summary="Change an alarm rule",
        description="Changing what it watches, or disabling it, clears its open alarms and "
        "forgets its pending timers.",
        parameters=[RULE_ID, FORMAT_PARAMETER],
        request=RuleSerializer(partial=True),
        responses={
            **_ok(RuleSerializer, "The rule as changed.", RULE_EXAMPLE),
            **error_responses(400, 401, 403, 404, 429),
        },
        examples=[OpenApiExample("raise the bar", value={"threshold": 95}, request_only=True)],
        tags=["alarms"],
    ),
    delete=extend_schema(
        operation_id="alarm_rules_destroy",
        summary="Delete an alarm rule with its alarms",
        parameters=[RULE_ID, FORMAT_PARAMETER],
        responses={
            204: OpenApiResponse(None, description="Deleted."),
            **error_responses(400, 401, 403, 404, 429),
        },
        tags=["alarms"],
    ),
)(RuleDetailView)
extend_schema_view(
    get=extend_schema(
        operation_id="alarms_list",
        summary="Your alarms, newest first",
        parameters=[*FILTERS, CURSOR, FORMAT_PARAMETER],
        responses={
            **_ok(
                AlarmPageDoc,
                "A page of alarms; follow `next`.",
                {"next": None, "previous": None, "results": [ALARM_EXAMPLE]},
            ),
            **error_responses(400, 401, 429),
        },
        tags=["alarms"],
    ),
)(AlarmListView)
_detail = {**ALARM_EXAMPLE, "events": EVENTS_EXAMPLE}
extend_schema_view(
    get=extend_schema(
        operation_id="alarms_retrieve",
        summary="One of your alarms with every change, oldest first",
        parameters=[ALARM_ID, FORMAT_PARAMETER],
        responses={
            **_ok(AlarmDetailDoc, "The alarm.", _detail),
            **error_responses(400, 401, 404, 429),
        },
        tags=["alarms"],
    ),
)(AlarmDetailView)
for view, operation, summary in (
    (AlarmAckView, "alarms_acknowledge", "Acknowledge an alarm (again: no change)"),
    (AlarmClearView, "alarms_clear", "Clear an alarm by hand (again: no change)"),
):
    extend_schema_view(
        post=extend_schema(
            operation_id=operation,
            summary=summary,
            parameters=[ALARM_ID, FORMAT_PARAMETER],
            request=None,
            responses={
                **_ok(AlarmDetailDoc, "The alarm as it is now.", _detail),
                **error_responses(400, 401, 403, 404, 429),
            },
            tags=["alarms"],
        ),
    )(view)
extend_schema_view(
    get=extend_schema(
        operation_id="webhooks_list",
        summary="Your webhooks with their latest deliveries",
        parameters=[FORMAT_PARAMETER],
        responses={
            **_ok(WebhookDoc.__class__(many=True), "Oldest first.", [WEBHOOK_EXAMPLE]),
            **error_responses(400, 401, 429),
        },
        tags=["alarms"],
    ),
    post=extend_schema(
        operation_id="webhooks_create",
        summary="Add a webhook",
        description="Every change of your alarms is POSTed to `url`, signed with `secret` "
        "(X-Hub-Signature-256). Hosts that resolve to non-public addresses are refused. "
        "Without a secret, one is made; it is shown only in this response.",
        parameters=[FORMAT_PARAMETER],
        request=WebhookSerializer,
        responses={
            **_ok(
                WebhookCreatedDoc,
                "Created; `secret` is shown this once.",
                {**WEBHOOK_EXAMPLE, "deliveries": [], "secret": "…"},
                201,
            ),
            **error_responses(400, 401, 403, 429),
        },
        examples=[
            OpenApiExample(
                "a receiver", value={"url": "https://example.com/hooks/hub"}, request_only=True
            )
        ],
        tags=["alarms"],
    ),
)(WebhookListView)
extend_schema_view(
    get=extend_schema(
        operation_id="webhooks_retrieve",
        summary="One of your webhooks with its latest deliveries and errors",
        parameters=[WEBHOOK_ID, FORMAT_PARAMETER],
        responses={
            **_ok(WebhookDoc, "The webhook.", WEBHOOK_EXAMPLE),
            **error_responses(400, 401, 404, 429),
        },
        tags=["alarms"],
    ),
    patch=extend_schema(
        operation_id="webhooks_update",
        summary="Change a webhook's url, secret or enabled flag",
        parameters=[WEBHOOK_ID, FORMAT_PARAMETER],
        request=WebhookSerializer(partial=True),
        responses={
            **_ok(WebhookDoc, "The webhook as changed.", WEBHOOK_EXAMPLE),
            **error_responses(400, 401, 403, 404, 429),
        },
        examples=[OpenApiExample("pause", value={"enabled": False}, request_only=True)],
        tags=["alarms"],
    ),
    delete=extend_schema(
        operation_id="webhooks_destroy",
        summary="Delete a webhook with its deliveries",
        parameters=[WEBHOOK_ID, FORMAT_PARAMETER],
        responses={
            204: OpenApiResponse(None, description="Deleted."),
            **error_responses(400, 401, 403, 404, 429),
        },
        tags=["alarms"],
    ),
)(WebhookDetailView)
_ = AlarmFilterSerializer  # the list's filters are described as FILTERS above
