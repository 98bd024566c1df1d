"""REST endpoints for a user's own devices: list, register, read, change, delete, rotate."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import HttpResponseBase
from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from core.requests import AuthenticatedRequest
from core.streaming import json_array_chunks, streaming_response
from core.throttling import AnonRateThrottle, PasswordRateThrottle
from devices.access import refuse_limited_key, visible_devices
from devices.models import Device
from devices.selectors import uid_is_valid
from devices.serializers import (
    DUPLICATE_UID_MESSAGE,
    CredentialsSerializer,
    DeviceCreatedSerializer,
    DeviceCreateSerializer,
    DeviceSerializer,
    DeviceTokenSerializer,
    DeviceUpdateSerializer,
    TokenSerializer,
    error_responses,
)
from devices.services import device_delete, device_register, device_rotate_token, device_update

# Devices read from the database at a time for the streamed list.
DEVICES_PER_CHUNK = 500


class FormatParamNegotiation(DefaultContentNegotiation):
    """Answer an unknown `?format=` with a 400 naming the parameter instead of DRF's 404."""

    def filter_renderers(
        self, renderers: Iterable[BaseRenderer], format: str
    ) -> list[BaseRenderer]:
        offered = list(renderers)
        matching = [renderer for renderer in offered if renderer.format == format]
        if not matching:
            known = ", ".join(str(renderer.format) for renderer in offered)
            raise ValidationError({"format": [f"unsupported format; use one of: {known}"]})
        return matching


def own_device(request: Request, uid: str) -> Device:
    """Return the request's visible device with this uid, or raise 404 (never 403).

    Visible: the user's own, narrowed to an API key's devices (devices.access).
    """
    # Checking the shape first keeps NUL bytes and other junk away from the database.
    device = visible_devices(request).filter(uid=uid).first() if uid_is_valid(uid) else None
    if device is None:
        raise NotFound("no such device")
    return device


UID_PARAMETER = OpenApiParameter(
    "uid",
    str,
    OpenApiParameter.PATH,
    description="The device's uid; another user's device is 404.",
    examples=[OpenApiExample("boiler", value="boiler-1")],
)
FORMAT_PARAMETER = OpenApiParameter(
    "format", str, enum=["json"], description="`json` forces JSON whatever `Accept` says."
)
DEVICE_EXAMPLE = {
    "uid": "boiler-1",
    "name": "Boiler room",
    "active": True,
    "online": True,
    "last_seen": "2026-11-26T06:40:00.123Z",
    "created": "2026-11-20T09:00:00.000Z",
}


class TokenObtainView(ObtainAuthToken):
    """POST username and password, get the user's API token."""

    content_negotiation_class = FormatParamNegotiation
    # DRF's view names the standard parsers; the hub's JSON one turns hostile bodies into 400s.
    # api_settings imports the dotted paths it is given; djangorestframework-stubs type
    # them as the strings of the settings.
    parser_classes = cast("Sequence[type[BaseParser]]", api_settings.DEFAULT_PARSER_CLASSES)
    # Guessing passwords is throttled per real address, more strictly than other requests,
    # in one budget with the login forms.
    throttle_classes = [AnonRateThrottle, PasswordRateThrottle]

    @extend_schema(
        operation_id="auth_token",
        summary="Get your API token",
        description="Send it as `Authorization: Token <token>`. Throttled per address "
        "(HUB_THROTTLE_TOKEN), in one budget with the login form and the admin login.",
        request=CredentialsSerializer,
        responses={
            200: OpenApiResponse(TokenSerializer, description="The user's API token."),
            **error_responses(400, 429),
        },
        examples=[
            OpenApiExample(
                "credentials", value={"username": "alice", "password": "…"}, request_only=True
            ),
            OpenApiExample(
                "token",
                value={"token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"},
                response_only=True,
            ),
        ],
        parameters=[FORMAT_PARAMETER],
        auth=[],
        tags=["auth"],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


class DeviceListView(APIView):
    """GET the user's devices; POST registers one and shows its token once."""

    content_negotiation_class = FormatParamNegotiation

    @extend_schema(
        operation_id="devices_list",
        summary="Your devices",
        description="Every device you own, by uid, streamed: any number costs the hub "
        "constant memory.",
        parameters=[FORMAT_PARAMETER],
        responses={
            200: OpenApiResponse(DeviceSerializer(many=True), description="By uid."),
            **error_responses(400, 401, 429),
        },
        examples=[OpenApiExample("one device", value=[DEVICE_EXAMPLE], response_only=True)],
        tags=["devices"],
    )
    def get(self, request: Request) -> HttpResponseBase:
        # Streamed JSON in the same shape as ever: a user may own any number of devices.
        devices = visible_devices(request).order_by("uid").iterator(chunk_size=DEVICES_PER_CHUNK)
        items = (DeviceSerializer(device).data for device in devices)
        return streaming_response(
            request, json_array_chunks(items), content_type="application/json"
        )

    @extend_schema(
        operation_id="devices_create",
        summary="Register a device",
        description="The response carries the device's token (its MQTT password) this once.",
        parameters=[FORMAT_PARAMETER],
        request=DeviceCreateSerializer,
        responses={
            201: OpenApiResponse(
                DeviceCreatedSerializer, description="Registered; `token` is shown this once."
            ),
            **error_responses(400, 401, 403, 429),
        },
        examples=[
            OpenApiExample(
                "register", value={"uid": "boiler-1", "name": "Boiler room"}, request_only=True
            ),
            OpenApiExample(
                "registered",
                value={**DEVICE_EXAMPLE, "online": False, "last_seen": None, "token": "…"},
                response_only=True,
                status_codes=["201"],
            ),
        ],
        tags=["devices"],
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        # A key limited to devices would not see the device it registers.
        refuse_limited_key(request)
        serializer = DeviceCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            # A savepoint, so losing a race for the uid leaves the request usable.
            with transaction.atomic():
                device, token = device_register(owner=request.user, **serializer.validated_data)
        except DjangoValidationError as error:
            raise ValidationError(error.message_dict) from None
        except IntegrityError:
            raise ValidationError({"uid": [DUPLICATE_UID_MESSAGE]}) from None
        body: dict[str, Any] = {**DeviceSerializer(device).data, "token": token}
        location = reverse("device-detail", kwargs={"uid": device.uid})
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})


class DeviceDetailView(APIView):
    """GET, PATCH (name, active) or DELETE one of the user's devices."""

    content_negotiation_class = FormatParamNegotiation

    @extend_schema(
        operation_id="devices_retrieve",
        summary="One of your devices",
        parameters=[UID_PARAMETER, FORMAT_PARAMETER],
        responses={
            200: OpenApiResponse(DeviceSerializer, description="The device."),
            **error_responses(400, 401, 404, 429),
        },
        examples=[OpenApiExample("device", value=DEVICE_EXAMPLE, response_only=True)],
        tags=["devices"],
    )
    def get(self, request: Request, uid: str) -> Response:
        return Response(DeviceSerializer(own_device(request, uid)).data)

    @extend_schema(
        operation_id="devices_update",
        summary="Rename, disable or enable a device",
        description="A disabled device's messages are ignored (and counted).",
        parameters=[UID_PARAMETER, FORMAT_PARAMETER],
        request=DeviceUpdateSerializer,
        responses={
            200: OpenApiResponse(
                DeviceSerializer,
                description="The device as changed.",
                examples=[OpenApiExample("renamed", value={**DEVICE_EXAMPLE, "name": "Boiler 1"})],
            ),
            **error_responses(400, 401, 403, 404, 429),
        },
        examples=[OpenApiExample("rename", value={"name": "Boiler 1"}, request_only=True)],
        tags=["devices"],
    )
    def patch(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        serializer = DeviceUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device = device_update(device=device, **serializer.validated_data)
        return Response(DeviceSerializer(device).data)

    @extend_schema(
        operation_id="devices_destroy",
        summary="Delete a device and its history",
        parameters=[UID_PARAMETER, FORMAT_PARAMETER],
        responses={
            204: OpenApiResponse(None, description="Deleted, with all its readings."),
            **error_responses(400, 401, 403, 404, 429),
        },
        tags=["devices"],
    )
    def delete(self, request: Request, uid: str) -> Response:
        device_delete(device=own_device(request, uid))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceRotateTokenView(APIView):
    """POST gives the device a new token, shown once; the old one stops working."""

    content_negotiation_class = FormatParamNegotiation

    @extend_schema(
        operation_id="devices_rotate_token",
        summary="Give a device a new token",
        description="The new token is shown once; the old one stops working at once.",
        parameters=[UID_PARAMETER, FORMAT_PARAMETER],
        request=None,
        responses={
            200: OpenApiResponse(
                DeviceTokenSerializer,
                description="The new token.",
                examples=[
                    OpenApiExample(
                        "new token", value={"uid": "boiler-1", "token": "Zq3…"}, response_only=True
                    )
                ],
            ),
            **error_responses(400, 401, 403, 404, 429),
        },
        tags=["devices"],
    )
    def post(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        token = device_rotate_token(device=device)
        return Response({"uid": device.uid, "token": token})
