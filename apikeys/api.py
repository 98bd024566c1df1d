"""REST endpoints for API keys (CONTRACT §8): list, create (shown once), revoke."""

from __future__ import annotations

from django.db import transaction
from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from apikeys.auth import NotApiKey
from apikeys.models import ApiKey
from apikeys.selectors import api_key_get, api_keys_of
from apikeys.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    api_key_data,
)
from apikeys.services import api_key_create, api_key_delete, api_key_revoke
from core.conf import hub_settings
from core.requests import AuthenticatedRequest
from devices.serializers import error_responses
from devices.views import FORMAT_PARAMETER, FormatParamNegotiation

KEY_EXAMPLE = {
    "id": 7,
    "name": "grafana",
    "prefix": "hub_3f9c0a1b2c3d4e5f",
    "scope": "read",
    "devices": ["boiler-1"],
    "expires": None,
    "state": "active",
    "revoked_at": None,
    "last_used_at": "2026-11-26T06:40:00.000Z",
    "created": "2026-11-20T09:00:00.000Z",
}
KEY_ID_PARAMETER = OpenApiParameter("key_id", int, OpenApiParameter.PATH, description="Its id.")
# Sessions and user tokens only: a key cannot list, make or revoke keys.
MANAGERS = [permissions.IsAuthenticated, NotApiKey]


def key_id_of(text: str) -> int:
    """Return a path's key id, or raise 404 for anything that cannot be one."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise NotFound("no such API key")
    return int(text)


class ApiKeyListView(APIView):
    """GET the user's keys; POST creates one and shows it once."""

    content_negotiation_class = FormatParamNegotiation
    permission_classes = MANAGERS

    @extend_schema(
        operation_id="api_keys_list",
        summary="Your API keys",
        description="Newest first; never a key's secret. Not available to API keys.",
        parameters=[FORMAT_PARAMETER],
        responses={
            200: OpenApiResponse(ApiKeySerializer(many=True), description="Newest first."),
            **error_responses(400, 401, 403, 429),
        },
        examples=[OpenApiExample("one key", value=[KEY_EXAMPLE], response_only=True)],
        tags=["api-keys"],
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response([api_key_data(key) for key in api_keys_of(owner=request.user)])

    @extend_schema(
        operation_id="api_keys_create",
        summary="Create an API key",
        description="`scope` read (GET, HEAD, OPTIONS only) or write; `devices` a list of "
        "your uids (the key sees only those) or null for every device; `expires` RFC 3339 "
        "or null. The answer carries `key` this once; the hub keeps only its hash. At most "
        "HUB_API_KEYS_PER_USER keys per user, revoked ones included until deleted.",
        parameters=[FORMAT_PARAMETER],
        request=ApiKeyCreateSerializer,
        responses={
            201: OpenApiResponse(ApiKeyCreatedSerializer, description="`key` is shown once."),
            **error_responses(400, 401, 403, 429),
        },
        examples=[
            OpenApiExample(
                "read one device",
                value={"name": "grafana", "scope": "read", "devices": ["boiler-1"]},
                request_only=True,
            ),
            OpenApiExample(
                "created",
                value={**KEY_EXAMPLE, "last_used_at": None, "key": "hub_3f9c0a1b2c3d4e5f_…"},
                response_only=True,
                status_codes=["201"],
            ),
        ],
        tags=["api-keys"],
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = ApiKeyCreateSerializer(data=request.data, context={"owner": request.user})
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            limit = hub_settings.API_KEYS_PER_USER
            if api_keys_of(owner=request.user).count() >= limit:
                raise ValidationError(
                    {
                        "limit": [
                            f"at most {limit} API keys per user (HUB_API_KEYS_PER_USER); "
                            "delete revoked keys to make room"
                        ]
                    }
                )
            key, text = api_key_create(owner=request.user, **serializer.validated_data)
        body = {**api_key_data(key), "key": text}
        location = reverse("api-key", kwargs={"key_id": key.pk})
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})


class ApiKeyDetailView(APIView):
    """GET one key; DELETE revokes it, and deletes it when it was already revoked."""

    content_negotiation_class = FormatParamNegotiation
    permission_classes = MANAGERS

    def _key(self, request: AuthenticatedRequest, key_id: str) -> ApiKey:
        key = api_key_get(owner=request.user, key_id=key_id_of(key_id))
        if key is None:
            raise NotFound("no such API key")
        return key

    @extend_schema(
        operation_id="api_keys_retrieve",
        summary="One of your API keys",
        parameters=[KEY_ID_PARAMETER, FORMAT_PARAMETER],
        responses={
            200: OpenApiResponse(ApiKeySerializer, description="The key, without its secret."),
            **error_responses(400, 401, 403, 404, 429),
        },
        examples=[OpenApiExample("key", value=KEY_EXAMPLE, response_only=True)],
        tags=["api-keys"],
    )
    def get(self, request: AuthenticatedRequest, key_id: str) -> Response:
        return Response(api_key_data(self._key(request, key_id)))

    @extend_schema(
        operation_id="api_keys_destroy",
        summary="Revoke an API key (delete it once revoked)",
        description="The first DELETE revokes the key: it stops working at once (open "
        "sockets are closed within HUB_API_KEY_RECHECK_SECONDS) and stays listed with "
        "`revoked_at`. A DELETE of a revoked key removes it from the list.",
        parameters=[KEY_ID_PARAMETER, FORMAT_PARAMETER],
        responses={
            204: OpenApiResponse(None, description="Revoked (or deleted, if it was revoked)."),
            **error_responses(400, 401, 403, 404, 429),
        },
        tags=["api-keys"],
    )
    def delete(self, request: AuthenticatedRequest, key_id: str) -> Response:
        key = self._key(request, key_id)
        if key.revoked_at is None:
            api_key_revoke(key=key)
        else:
            api_key_delete(key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)
