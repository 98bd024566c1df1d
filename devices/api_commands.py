"""REST endpoints for commands to a device and its presence history."""

from __future__ import annotations

from typing import Any

import orjson
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from core.moments import format_moment
from core.requests import AuthenticatedRequest
from core.throttling import CommandRateThrottle
from devices.access import visible_devices
from devices.dispatch import command_send
from devices.models import Command, PresenceEvent
from devices.selectors import command_get
from devices.serializers import StrictCharField
from devices.services import (
    COMMAND_TIMEOUT_DEFAULT_S,
    COMMAND_TIMEOUT_MAX_S,
    command_create,
    device_is_online,
    json_has_nul,
)
from devices.views import FormatParamNegotiation, own_device

# A command travels as one MQTT message: well under the broker's packet limit.
MAX_PARAMS_BYTES = 65_536


class CommandCreateSerializer(serializers.Serializer[Any]):
    """`{"method", "params", "timeout"}` of a new command."""

    method = StrictCharField(max_length=64)
    params = serializers.DictField(required=False, default=dict)
    timeout = serializers.IntegerField(
        required=False,
        default=COMMAND_TIMEOUT_DEFAULT_S,
        min_value=1,
        max_value=COMMAND_TIMEOUT_MAX_S,
    )

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Refuse params the database or the broker could not carry."""
        if json_has_nul(params):
            raise serializers.ValidationError("must not contain NUL characters (\\u0000)")
        try:
            size = len(orjson.dumps(params))
        except orjson.JSONEncodeError as error:
            raise serializers.ValidationError(f"cannot be sent as JSON: {error}") from None
        if size > MAX_PARAMS_BYTES:
            raise serializers.ValidationError(f"at most {MAX_PARAMS_BYTES} bytes as JSON")
        return params


class CommandSerializer(serializers.ModelSerializer[Command]):
    """A command and where it is."""

    device = serializers.CharField(source="device.uid", read_only=True)
    created = serializers.SerializerMethodField()
    sent_at = serializers.SerializerMethodField()
    finished_at = serializers.SerializerMethodField()
    expires_at = serializers.SerializerMethodField()

    class Meta:
        model = Command
        fields = (
            "id",
            "device",
            "method",
            "params",
            "timeout",
            "status",
            "result",
            "error",
            "created",
            "sent_at",
            "finished_at",
            "expires_at",
        )
        read_only_fields = fields

    def get_created(self, command: Command) -> str | None:
        return format_moment(command.created)

    def get_sent_at(self, command: Command) -> str | None:
        return format_moment(command.sent_at)

    def get_finished_at(self, command: Command) -> str | None:
        return format_moment(command.finished_at)

    def get_expires_at(self, command: Command) -> str | None:
        return format_moment(command.expires_at)


class PresenceSerializer(serializers.ModelSerializer[PresenceEvent]):
    """One online/offline change."""

    at = serializers.SerializerMethodField()

    class Meta:
        model = PresenceEvent
        fields = ("online", "at", "source")
        read_only_fields = fields

    def get_at(self, event: PresenceEvent) -> str | None:
        return format_moment(event.at)


class NewestFirst(CursorPagination):
    """Cursor pages, newest first."""

    page_size = 100
    ordering: tuple[str, ...] = ("-created",)


class PresencePages(NewestFirst):
    """Cursor pages of presence events, newest first."""

    ordering = ("-at", "-id")


class DeviceCommandsView(APIView):
    """GET the device's commands, newest first; POST sends one."""

    content_negotiation_class = FormatParamNegotiation

    def get_throttles(self) -> list[BaseThrottle]:
        """Count each POST against the user's command rate too, shared with the socket."""
        throttles: list[BaseThrottle] = list(super().get_throttles())
        if self.request.method == "POST":
            throttles.append(CommandRateThrottle())
        return throttles

    def get(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        paginator = NewestFirst()
        page = paginator.paginate_queryset(
            Command.objects.filter(device=device).select_related("device"), request, view=self
        )
        return paginator.get_paginated_response(CommandSerializer(page, many=True).data)

    def post(self, request: AuthenticatedRequest, uid: str) -> Response:
        device = own_device(request, uid)
        serializer = CommandCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            command = command_create(
                device=device, created_by=request.user, **serializer.validated_data
            )
        layer = get_channel_layer()
        if layer is not None:
            online = device_is_online(device_id=command.device_id)
            async_to_sync(command_send)(layer, command, online=online)
        return Response(CommandSerializer(command).data, status=status.HTTP_201_CREATED)


class CommandDetailView(APIView):
    """GET one command of one of the user's devices."""

    content_negotiation_class = FormatParamNegotiation

    def get(self, request: Request, command_id: str) -> Response:
        command = command_get(devices=visible_devices(request), command_id=command_id)
        if command is None:
            raise NotFound("no such command")
        return Response(CommandSerializer(command).data)


class DevicePresenceView(APIView):
    """GET the device's online/offline changes, newest first."""

    content_negotiation_class = FormatParamNegotiation

    def get(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        paginator = PresencePages()
        page = paginator.paginate_queryset(
            PresenceEvent.objects.filter(device=device), request, view=self
        )
        return paginator.get_paginated_response(PresenceSerializer(page, many=True).data)
