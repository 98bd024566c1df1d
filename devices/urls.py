"""Device endpoints under /api/v1/, with the OpenAPI description of the command endpoints."""

from typing import Any

from django.urls import path
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers

from devices.api_attributes import DeviceAttributesView
from devices.api_commands import (
    CommandCreateSerializer,
    CommandDetailView,
    CommandSerializer,
    DeviceCommandsView,
    DevicePresenceView,
    PresenceSerializer,
)
from devices.serializers import error_responses
from devices.views import (
    FORMAT_PARAMETER,
    UID_PARAMETER,
    DeviceDetailView,
    DeviceListView,
    DeviceRotateTokenView,
    TokenObtainView,
)


def _pages(name: str, item: serializers.Serializer[Any]) -> serializers.Serializer[Any]:
    return inline_serializer(
        name=name,
        fields={
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item,
        },
    )


CURSOR = OpenApiParameter("cursor", str, description="Opaque; use the `next` link as given.")
COMMAND_EXAMPLE = {
    "id": "5f0c3a9e2b7d4c1a8e6f0b2d4c6a8e0f",
    "device": "boiler-1",
    "method": "set_interval",
    "params": {"seconds": 5},
    "timeout": 10,
    "status": "succeeded",
    "result": {},
    "error": "",
    "created": "2026-11-26T06:40:00.000Z",
    "sent_at": "2026-11-26T06:40:00.020Z",
    "finished_at": "2026-11-26T06:40:00.250Z",
    "expires_at": "2026-11-26T06:40:10.000Z",
}

extend_schema_view(
    get=extend_schema(
        operation_id="device_commands_list",
        summary="A device's commands, newest first",
        parameters=[UID_PARAMETER, CURSOR, FORMAT_PARAMETER],
        responses={
            200: OpenApiResponse(
                _pages("CommandPage", CommandSerializer(many=True)),
                description="A page of commands; follow `next`.",
                examples=[
                    OpenApiExample(
                        "a page",
                        value={"next": None, "previous": None, "results": [COMMAND_EXAMPLE]},
                    )
                ],
            ),
            **error_responses(400, 401, 404, 429),
        },
        tags=["commands"],
    ),
    post=extend_schema(
        operation_id="device_commands_create",
        summary="Send a command to a device",
        description="Published to `devices/{uid}/commands/{id}` once the device is online; "
        "`status` goes pending → sent → succeeded, failed or expired.",
        parameters=[UID_PARAMETER, FORMAT_PARAMETER],
        request=CommandCreateSerializer,
        responses={
            201: OpenApiResponse(CommandSerializer, description="Queued for the device."),
            **error_responses(400, 401, 403, 404, 429),
        },
        examples=[
            OpenApiExample(
                "set interval",
                value={"method": "set_interval", "params": {"seconds": 5}, "timeout": 10},
                request_only=True,
            ),
            OpenApiExample(
                "pending",
                value={**COMMAND_EXAMPLE, "status": "pending", "result": None},
                response_only=True,
                status_codes=["201"],
            ),
        ],
        tags=["commands"],
    ),
)(DeviceCommandsView)
extend_schema_view(
    get=extend_schema(
        operation_id="commands_retrieve",
        summary="One command to one of your devices",
        parameters=[
            OpenApiParameter("command_id", str, OpenApiParameter.PATH, description="Its id."),
            FORMAT_PARAMETER,
        ],
        responses={
            200: OpenApiResponse(CommandSerializer, description="The command."),
            **error_responses(400, 401, 404, 429),
        },
        examples=[OpenApiExample("done", value=COMMAND_EXAMPLE, response_only=True)],
        tags=["commands"],
    ),
)(CommandDetailView)
extend_schema_view(
    get=extend_schema(
        operation_id="device_presence_list",
        summary="A device's online/offline changes, newest first",
        parameters=[UID_PARAMETER, CURSOR, FORMAT_PARAMETER],
        responses={
            200: OpenApiResponse(
                _pages("PresencePage", PresenceSerializer(many=True)),
                description="A page of changes; follow `next`.",
                examples=[
                    OpenApiExample(
                        "a page",
                        value={
                            "next": None,
                            "previous": None,
                            "results": [
                                {
                                    "online": False,
                                    "at": "2026-11-26T06:40:00.000Z",
                                    "source": "status",
                                }
                            ],
                        },
                    )
                ],
            ),
            **error_responses(400, 401, 404, 429),
        },
        tags=["devices"],
    ),
)(DevicePresenceView)

urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="auth-token"),
    path("devices/", DeviceListView.as_view(), name="device-list"),
    path("devices/<str:uid>/", DeviceDetailView.as_view(), name="device-detail"),
    path(
        "devices/<str:uid>/rotate-token/",
        DeviceRotateTokenView.as_view(),
        name="device-rotate-token",
    ),
    path("devices/<str:uid>/commands/", DeviceCommandsView.as_view(), name="device-commands"),
    path("devices/<str:uid>/presence/", DevicePresenceView.as_view(), name="device-presence"),
    path("devices/<str:uid>/attributes/", DeviceAttributesView.as_view(), name="device-attributes"),
    path("commands/<str:command_id>/", CommandDetailView.as_view(), name="command-detail"),
]
