"""REST endpoints for a user's own devices: list, register, read, change, delete, rotate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.models import Device
from devices.selectors import device_get, device_list
from devices.serializers import (
    DUPLICATE_UID_MESSAGE,
    DeviceCreateSerializer,
    DeviceSerializer,
    DeviceUpdateSerializer,
)
from devices.services import device_delete, device_register, device_rotate_token, device_update


class FormatParamNegotiation(DefaultContentNegotiation):
    """Answer an unknown `?format=` with a 400 naming the parameter instead of DRF's 404."""

    def filter_renderers(
        self, renderers: Sequence[BaseRenderer], format: str
    ) -> list[BaseRenderer]:
        matching = [renderer for renderer in renderers if renderer.format == format]
        if not matching:
            known = ", ".join(str(renderer.format) for renderer in renderers)
            raise ValidationError({"format": [f"unsupported format; use one of: {known}"]})
        return matching


def own_device(request: Request, uid: str) -> Device:
    """Return the requesting user's device with this uid, or raise 404 (never 403)."""
    device = device_get(owner=request.user, uid=uid)
    if device is None:
        raise NotFound("no such device")
    return device


class TokenObtainView(ObtainAuthToken):
    """POST username and password, get the user's API token."""

    content_negotiation_class = FormatParamNegotiation


class DeviceListView(APIView):
    """GET the user's devices; POST registers one and shows its token once."""

    content_negotiation_class = FormatParamNegotiation

    def get(self, request: Request) -> Response:
        devices = device_list(owner=request.user)
        return Response(DeviceSerializer(devices, many=True).data)

    def post(self, request: Request) -> Response:
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

    def get(self, request: Request, uid: str) -> Response:
        return Response(DeviceSerializer(own_device(request, uid)).data)

    def patch(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        serializer = DeviceUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device = device_update(device=device, **serializer.validated_data)
        return Response(DeviceSerializer(device).data)

    def delete(self, request: Request, uid: str) -> Response:
        device_delete(device=own_device(request, uid))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceRotateTokenView(APIView):
    """POST gives the device a new token, shown once; the old one stops working."""

    content_negotiation_class = FormatParamNegotiation

    def post(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        token = device_rotate_token(device=device)
        return Response({"uid": device.uid, "token": token})
