"""REST endpoints: a user's provisioning keys, and the claim a device makes with one."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from apikeys.auth import NotApiKey
from core.requests import AuthenticatedRequest
from core.throttling import client_address
from devices.serializers import error_responses
from devices.views import FormatParamNegotiation
from provisioning.models import ProvisioningKey
from provisioning.selectors import key_get, keys_of
from provisioning.serializers import (
    ClaimedSerializer,
    ClaimSerializer,
    KeyCreatedSerializer,
    KeyCreateSerializer,
    KeySerializer,
    RefusalSerializer,
)
from provisioning.services import ClaimRefused, device_claim, key_create, key_revoke

KEY_ID_PARAMETER = OpenApiParameter(
    "key_id", str, OpenApiParameter.PATH, description="The key's `id`; another user's is 404."
)
KEY_EXAMPLE = {
    "id": 7,
    "key": "pk.Xq2v9RbT0aLw3mZk8cYfJg",
    "name": "Factory line 2",
    "max_devices": 500,
    "expires": "2027-01-01T00:00:00.000Z",
    "uid_prefix": "line2-",
    "devices_claimed": 0,
    "revoked": False,
    "revoked_at": None,
    "created": "2026-11-26T06:40:00.000Z",
}


class ProvisionRateThrottle(SimpleRateThrottle):
    """HUB_THROTTLE_PROVISION claims per real client address, good secret or not."""

    scope = "provision"

    def get_cache_key(self, request: Request, view: object) -> str:
        """Count by the client's real address (hub.throttling.client_address)."""
        return str(self.cache_format % {"scope": self.scope, "ident": client_address(request)})


class KeyListView(APIView):
    """GET the user's provisioning keys; POST creates one and shows its secret once."""

    content_negotiation_class = FormatParamNegotiation
    # Sessions and user tokens only: an API key cannot mint device credentials.
    permission_classes = [IsAuthenticated, NotApiKey]

    @extend_schema(
        operation_id="provisioning_keys_list",
        summary="Your provisioning keys",
        responses={
            200: OpenApiResponse(KeySerializer(many=True), description="Newest first."),
            **error_responses(400, 401, 429),
        },
        examples=[OpenApiExample("one key", value=[KEY_EXAMPLE], response_only=True)],
        tags=["provisioning"],
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(KeySerializer(keys_of(owner=request.user), many=True).data)

    @extend_schema(
        operation_id="provisioning_keys_create",
        summary="Create a provisioning key",
        description="The response carries `secret` this once; it is stored hashed. At most "
        "HUB_PROVISIONING_KEYS_PER_USER unrevoked keys per user.",
        request=KeyCreateSerializer,
        responses={
            201: OpenApiResponse(KeyCreatedSerializer, description="`secret` is shown this once."),
            **error_responses(400, 401, 403, 429),
        },
        examples=[
            OpenApiExample(
                "create",
                value={"name": "Factory line 2", "max_devices": 500, "uid_prefix": "line2-"},
                request_only=True,
            ),
            OpenApiExample(
                "created",
                value={**KEY_EXAMPLE, "secret": "…"},
                response_only=True,
                status_codes=["201"],
            ),
        ],
        tags=["provisioning"],
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = KeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            created = key_create(owner=request.user, **serializer.validated_data)
        except DjangoValidationError as error:
            raise ValidationError(error.message_dict) from None
        body = {**KeySerializer(created.key).data, "secret": created.secret}
        return Response(body, status=status.HTTP_201_CREATED)


class KeyDetailView(APIView):
    """GET one of the user's keys; DELETE revokes it (it stays listed, revoked)."""

    content_negotiation_class = FormatParamNegotiation
    # Sessions and user tokens only: an API key cannot mint device credentials.
    permission_classes = [IsAuthenticated, NotApiKey]

    @extend_schema(
        operation_id="provisioning_keys_retrieve",
        parameters=[KEY_ID_PARAMETER],
        summary="One of your provisioning keys",
        responses={
            200: OpenApiResponse(KeySerializer, description="The key (never its secret)."),
            **error_responses(400, 401, 404, 429),
        },
        examples=[OpenApiExample("key", value=KEY_EXAMPLE, response_only=True)],
        tags=["provisioning"],
    )
    def get(self, request: AuthenticatedRequest, key_id: str) -> Response:
        return Response(KeySerializer(_own_key(request, key_id)).data)

    @extend_schema(
        operation_id="provisioning_keys_revoke",
        parameters=[KEY_ID_PARAMETER],
        summary="Revoke a provisioning key",
        description="No device can claim with it any more; devices it registered stay.",
        responses={
            204: OpenApiResponse(None, description="Revoked."),
            **error_responses(400, 401, 403, 404, 429),
        },
        tags=["provisioning"],
    )
    def delete(self, request: AuthenticatedRequest, key_id: str) -> Response:
        key_revoke(key=_own_key(request, key_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _own_key(request: AuthenticatedRequest, key_id: str) -> ProvisioningKey:
    key = key_get(owner=request.user, key_id=key_id)
    if key is None:
        raise NotFound("no such provisioning key")
    return key


class ClaimView(APIView):
    """POST key, secret and uid: the device is registered for the key's owner."""

    content_negotiation_class = FormatParamNegotiation
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [ProvisionRateThrottle]

    @extend_schema(
        operation_id="provision_claim",
        summary="Claim a device's credentials with a provisioning key",
        description="For devices: no user credentials. 403 `key_invalid` (unknown key or "
        "wrong secret), `key_revoked`, `key_expired`, `key_exhausted`; 409 `uid_taken`; 400 "
        "for a bad uid or one outside the key's uid prefix. Throttled per client address "
        "(HUB_THROTTLE_PROVISION).",
        request=ClaimSerializer,
        responses={
            201: OpenApiResponse(ClaimedSerializer, description="`token` is shown this once."),
            403: OpenApiResponse(RefusalSerializer, description="The key may not claim."),
            409: OpenApiResponse(RefusalSerializer, description="The uid is taken."),
            # A field is wrong: its name maps to its messages (`error` is uid_invalid,
            # uid_prefix or name_invalid when the claim, not the body, was refused).
            **error_responses(400, 429),
        },
        examples=[
            OpenApiExample(
                "claim",
                value={"key": KEY_EXAMPLE["key"], "secret": "…", "uid": "line2-0001"},
                request_only=True,
            ),
            OpenApiExample(
                "claimed",
                value={"uid": "line2-0001", "token": "…"},
                response_only=True,
                status_codes=["201"],
            ),
            OpenApiExample(
                "revoked",
                value={"error": "key_revoked", "detail": "this provisioning key was revoked"},
                response_only=True,
                status_codes=["403"],
            ),
        ],
        auth=[],
        tags=["provisioning"],
    )
    def post(self, request: Request) -> Response:
        serializer = ClaimSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            claimed = device_claim(**serializer.validated_data)
        except ClaimRefused as refusal:
            body: dict[str, object] = {"error": refusal.code, "detail": refusal.message}
            if refusal.status == status.HTTP_400_BAD_REQUEST:
                body = {
                    "uid" if refusal.code.startswith("uid") else "name": [refusal.message],
                    **body,
                }
            return Response(body, status=refusal.status)
        return Response(
            {"uid": claimed.device.uid, "token": claimed.token}, status=status.HTTP_201_CREATED
        )
