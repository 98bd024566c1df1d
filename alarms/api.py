"""REST endpoints for alarm rules, alarms and webhooks (CONTRACT §6); a user sees only their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alarms.frames import AlarmChange, alarms_broadcast
from alarms.models import Alarm, AlarmRule, Webhook
from alarms.selectors import (
    alarm_events,
    alarm_get,
    alarms_of,
    deliveries_recent,
    rule_get,
    rules_of,
    webhook_get,
    webhooks_of,
)
from alarms.serializers import (
    AlarmFilterSerializer,
    DeliverySerializer,
    EventSerializer,
    RuleSerializer,
    WebhookSerializer,
    alarm_data,
)
from alarms.services import (
    alarm_acknowledge,
    alarm_clear,
    rule_create,
    rule_delete,
    rule_update,
    webhook_create,
    webhook_update,
)
from core.conf import hub_settings
from core.requests import AuthenticatedRequest
from devices.access import limited_devices, refuse_limited_key
from devices.views import FormatParamNegotiation


class NewestFirst(CursorPagination):
    """Cursor pages of alarms, newest first."""

    page_size = 100
    ordering = ("-started", "-id")

    def decode_cursor(self, request: Request) -> Any:
        """Answer a cursor that is not one of ours with a 400 naming it, not DRF's 404."""
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({"cursor": ["invalid cursor; use the `next` link"]}) from None


def changes_publish(changes: list[AlarmChange]) -> None:
    """Send alarm frames once the transaction commits."""
    if not changes:
        return
    layer = get_channel_layer()
    if layer is not None:
        transaction.on_commit(lambda: async_to_sync(alarms_broadcast)(layer, changes))


def object_id(text: str, what: str) -> int:
    """Return a path's object id, or raise 404 for anything that cannot be one."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise NotFound(f"no such {what}")
    return int(text)


def _own(found: Any, what: str) -> Any:
    if found is None:
        raise NotFound(f"no such {what}")
    return found


def _limit(count: int, limit: int, setting: str, what: str) -> None:
    if count >= limit:
        raise ValidationError({"limit": [f"at most {limit} {what} per user ({setting})"]})


class RuleListView(APIView):
    """GET the user's alarm rules; POST creates one."""

    content_negotiation_class = FormatParamNegotiation

    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(
            RuleSerializer(
                # djangorestframework-stubs take one instance even with many=True.
                cast(Any, rules_of(owner=request.user, devices=limited_devices(request))),
                many=True,
            ).data
        )

    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = RuleSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            limit = hub_settings.ALARM_RULES_PER_USER
            _limit(rules_of(owner=request.user).count(), limit, "HUB_ALARM_RULES_PER_USER", "rules")
            rule = rule_create(owner=request.user, **serializer.validated_data)
        return Response(RuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class RuleDetailView(APIView):
    """GET, PATCH or DELETE one of the user's alarm rules."""

    content_negotiation_class = FormatParamNegotiation

    def get(self, request: AuthenticatedRequest, rule_id: str) -> Response:
        rule = _own(
            rule_get(
                owner=request.user,
                devices=limited_devices(request),
                rule_id=object_id(rule_id, "rule"),
            ),
            "rule",
        )
        return Response(RuleSerializer(rule).data)

    def patch(self, request: AuthenticatedRequest, rule_id: str) -> Response:
        rule: AlarmRule = _own(
            rule_get(
                owner=request.user,
                devices=limited_devices(request),
                rule_id=object_id(rule_id, "rule"),
            ),
            "rule",
        )
        serializer = RuleSerializer(
            rule, data=request.data, partial=True, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        changes_publish(rule_update(rule=rule, user=request.user, **serializer.validated_data))
        return Response(RuleSerializer(rule).data)

    def delete(self, request: AuthenticatedRequest, rule_id: str) -> Response:
        rule_delete(
            rule=_own(
                rule_get(
                    owner=request.user,
                    devices=limited_devices(request),
                    rule_id=object_id(rule_id, "rule"),
                ),
                "rule",
            )
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlarmListView(APIView):
    """GET the user's alarms, newest first; filters: state, acknowledged, device, severity, rule."""

    content_negotiation_class = FormatParamNegotiation

    def get(self, request: AuthenticatedRequest) -> Response:
        known = AlarmFilterSerializer().fields
        filters = AlarmFilterSerializer(
            data={name: value for name, value in request.query_params.items() if name in known}
        )
        filters.is_valid(raise_exception=True)
        paginator = NewestFirst()
        page = paginator.paginate_queryset(
            alarms_of(
                owner=request.user,
                devices=limited_devices(request),
                filters=dict(filters.validated_data),
            ),
            request,
            view=self,
        )
        return paginator.get_paginated_response([alarm_data(alarm) for alarm in page or ()])


def _alarm_detail(alarm: Alarm) -> dict[str, Any]:
    return {
        **alarm_data(alarm),
        "events": EventSerializer(alarm_events(alarm=alarm), many=True).data,
    }


class AlarmDetailView(APIView):
    """GET one of the user's alarms with every change, oldest first."""

    content_negotiation_class = FormatParamNegotiation

    def get(self, request: AuthenticatedRequest, alarm_id: str) -> Response:
        return Response(
            _alarm_detail(
                _own(
                    alarm_get(
                        owner=request.user,
                        devices=limited_devices(request),
                        alarm_id=object_id(alarm_id, "alarm"),
                    ),
                    "alarm",
                )
            )
        )


class _AlarmActionView(APIView):
    content_negotiation_class = FormatParamNegotiation
    service: Callable[..., list[AlarmChange]]

    def post(self, request: AuthenticatedRequest, alarm_id: str) -> Response:
        alarm = _own(
            alarm_get(
                owner=request.user,
                devices=limited_devices(request),
                alarm_id=object_id(alarm_id, "alarm"),
            ),
            "alarm",
        )
        changes_publish(type(self).service(alarm=alarm, user=request.user))
        return Response(
            _alarm_detail(
                _own(
                    alarm_get(
                        owner=request.user,
                        devices=limited_devices(request),
                        alarm_id=object_id(alarm_id, "alarm"),
                    ),
                    "alarm",
                )
            )
        )


class AlarmAckView(_AlarmActionView):
    """POST acknowledges the alarm (again: no change)."""

    service = staticmethod(alarm_acknowledge)


class AlarmClearView(_AlarmActionView):
    """POST clears the alarm by hand (again: no change)."""

    service = staticmethod(alarm_clear)


def _webhook_data(webhook: Webhook, *, secret: bool = False) -> dict[str, Any]:
    deliveries = DeliverySerializer(deliveries_recent(webhook=webhook), many=True).data
    failed = next((item for item in deliveries if item["last_error"]), None)
    data = {
        **WebhookSerializer(webhook).data,
        "deliveries": deliveries,
        "last_error": failed["last_error"] if failed else None,
    }
    if secret:
        data["secret"] = webhook.secret
    return data


class AccountWideView(APIView):
    """A view of what belongs to the whole account: refused (403) to device-limited API keys."""

    content_negotiation_class = FormatParamNegotiation

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Authenticate as usual, then refuse a key limited to some devices."""
        super().initial(request, *args, **kwargs)
        refuse_limited_key(request)


class WebhookListView(AccountWideView):
    """GET the user's webhooks with their latest deliveries; POST creates one."""

    def get(self, request: AuthenticatedRequest) -> Response:
        return Response([_webhook_data(hook) for hook in webhooks_of(owner=request.user)])

    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = WebhookSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            limit = hub_settings.WEBHOOKS_PER_USER
            _limit(
                webhooks_of(owner=request.user).count(), limit, "HUB_WEBHOOKS_PER_USER", "webhooks"
            )
            webhook = webhook_create(
                owner=request.user,
                url=serializer.validated_data["url"],
                secret=serializer.validated_data.get("secret"),
                enabled=serializer.validated_data["enabled"],
            )
        return Response(_webhook_data(webhook, secret=True), status=status.HTTP_201_CREATED)


class WebhookDetailView(AccountWideView):
    """GET, PATCH or DELETE one of the user's webhooks."""

    def get(self, request: AuthenticatedRequest, webhook_id: str) -> Response:
        return Response(
            _webhook_data(
                _own(
                    webhook_get(owner=request.user, webhook_id=object_id(webhook_id, "webhook")),
                    "webhook",
                )
            )
        )

    def patch(self, request: AuthenticatedRequest, webhook_id: str) -> Response:
        webhook = _own(
            webhook_get(owner=request.user, webhook_id=object_id(webhook_id, "webhook")), "webhook"
        )
        serializer = WebhookSerializer(webhook, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        webhook = webhook_update(webhook=webhook, **serializer.validated_data)
        return Response(_webhook_data(webhook))

    def delete(self, request: AuthenticatedRequest, webhook_id: str) -> Response:
        _own(
            webhook_get(owner=request.user, webhook_id=object_id(webhook_id, "webhook")), "webhook"
        ).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
