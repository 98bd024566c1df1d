"""REST endpoint for a device's attributes: read both sides, merge a patch into desired."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.moments import format_moment
from devices.attribute_services import AttributesState, attributes_desired_set, attributes_get
from devices.attributes import AttributesInvalid
from devices.dispatch import attributes_desired_changed
from devices.serializers import error_responses
from devices.views import FORMAT_PARAMETER, UID_PARAMETER, FormatParamNegotiation, own_device


class AttributesSerializer(serializers.Serializer[Any]):
    """`{"desired", "version", "reported", "reported_at"}` of one device."""

    desired = serializers.DictField()
    version = serializers.IntegerField()
    reported = serializers.DictField()
    reported_at = serializers.CharField(allow_null=True)


class DesiredPatchSerializer(serializers.Serializer[Any]):
    """`{"desired": {...}}`: an RFC 7396 merge patch; null removes a key."""

    desired = serializers.JSONField()

    def validate_desired(self, desired: Any) -> Any:
        """Refuse anything but a JSON object here; names and limits are the service's."""
        if not isinstance(desired, dict):
            raise serializers.ValidationError("must be a JSON object (a merge patch)")
        return desired


def attributes_body(state: AttributesState) -> dict[str, Any]:
    """Return the REST body of a device's attributes."""
    return {
        "desired": state.desired,
        "version": state.version,
        "reported": state.reported,
        "reported_at": format_moment(state.reported_at),
    }


EXAMPLE = {
    "desired": {"interval": 5, "setpoint": 21.5},
    "version": 3,
    "reported": {"interval": 5, "setpoint": 20.0, "firmware": "1.4.2"},
    "reported_at": "2026-11-26T06:40:00.123Z",
}


class DeviceAttributesView(APIView):
    """GET a device's desired and reported attributes; PATCH merges into desired."""

    content_negotiation_class = FormatParamNegotiation

    @extend_schema(
        operation_id="device_attributes_retrieve",
        summary="A device's desired and reported attributes",
        parameters=[UID_PARAMETER, FORMAT_PARAMETER],
        responses={
            200: OpenApiResponse(AttributesSerializer, description="Both sides."),
            **error_responses(400, 401, 404, 429),
        },
        examples=[OpenApiExample("attributes", value=EXAMPLE, response_only=True)],
        tags=["devices"],
    )
    def get(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        return Response(attributes_body(attributes_get(device=device)))

    @extend_schema(
        operation_id="device_attributes_partial_update",
        summary="Merge a patch into a device's desired attributes",
        description="RFC 7396: `null` removes a key, objects merge. A change bumps `version` "
        "and is published retained, QoS 1, to `devices/{uid}/attributes/desired`.",
        parameters=[UID_PARAMETER, FORMAT_PARAMETER],
        request=DesiredPatchSerializer,
        responses={
            200: OpenApiResponse(AttributesSerializer, description="Both sides after the merge."),
            **error_responses(400, 401, 403, 404, 429),
        },
        examples=[
            OpenApiExample(
                "set interval, drop mode",
                value={"desired": {"interval": 5, "mode": None}},
                request_only=True,
            ),
            OpenApiExample("merged", value=EXAMPLE, response_only=True, status_codes=["200"]),
        ],
        tags=["devices"],
    )
    def patch(self, request: Request, uid: str) -> Response:
        device = own_device(request, uid)
        serializer = DesiredPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            state, changed = attributes_desired_set(
                device=device, patch=serializer.validated_data["desired"]
            )
        except AttributesInvalid as error:
            raise ValidationError({"desired": [error.detail]}) from None
        layer = get_channel_layer()
        if changed and layer is not None:
            async_to_sync(attributes_desired_changed)(layer, [state])
        return Response(attributes_body(state))
