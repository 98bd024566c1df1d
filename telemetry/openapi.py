"""The OpenAPI description of HTTP ingest, POST /api/v1/devices/{uid}/telemetry/ (/api/schema/).

The endpoint is a plain async Django view (telemetry.http_ingest), which
drf-spectacular does not see. A preprocessing hook (SPECTACULAR_SETTINGS
PREPROCESSING_HOOKS) adds it as an endpoint described by HttpIngestSchemaView,
a view that only carries the description and never serves a request.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.authentication import BasicAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.serializers import VALIDATION_ERRORS_SCHEMA, DetailSerializer, error_responses
from telemetry.codec.bodies import CSV_FORM, JSON_FORM, SENML_FORM

PATH = "/api/v1/devices/{uid}/telemetry/"
PATH_REGEX = r"^api/v1/devices/(?P<uid>[^/]+)/telemetry/$"

NATIVE_EXAMPLE = [
    {"ts": 1767225600000, "values": {"temperature": 21.4, "door_open": False}},
    {"ts": 1767225660000, "values": {"temperature": 21.6}},
]
SENML_EXAMPLE = [
    {"bt": 1767225600, "n": "temperature", "u": "Cel", "v": 21.4},
    {"n": "temperature", "t": 60, "v": 21.6},
]
CSV_EXAMPLE = (
    "ts,metric,value\n1767225600000,temperature,21.4\n2026-01-01T00:01:00Z,door_open,true\n"
)
ANSWER_EXAMPLE = {
    "stored": 2,
    "duplicates": 0,
    "rejected": [{"index": 2, "error": "invalid_value: numbers must be finite"}],
}

IngestAnswer = inline_serializer(
    "HttpIngestAnswer",
    {
        "stored": serializers.IntegerField(help_text="Readings stored by this request."),
        "duplicates": serializers.IntegerField(
            help_text="Readings already stored with the same (metric, ts), skipped."
        ),
        "rejected": inline_serializer(
            "HttpIngestRejection",
            {
                "index": serializers.IntegerField(
                    help_text="The array element, SenML record or CSV data row it came from."
                ),
                "error": serializers.CharField(help_text="`reason: detail`."),
            },
            many=True,
        ),
    },
)
_NATIVE_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["values"],
    "properties": {
        "ts": {
            "oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}],
            "description": "Epoch milliseconds or RFC 3339; absent: when the hub received it.",
        },
        "values": {
            "type": "object",
            "additionalProperties": {
                "oneOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}]
            },
            "description": "Metric name → number, boolean or string.",
        },
    },
}
# Native JSON: one message as on MQTT, or an array of them.
NATIVE_SCHEMA: dict[str, Any] = {
    "oneOf": [_NATIVE_MESSAGE, {"type": "array", "items": _NATIVE_MESSAGE}],
}
# SenML (RFC 8428): an array of records; `n`+`bn` names the metric, `v`/`vb`/`vs` its value.
SENML_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "object", "additionalProperties": True},
}
UID = OpenApiParameter(
    "uid",
    str,
    OpenApiParameter.PATH,
    description="The device's uid: the user name of the HTTP Basic credentials.",
    examples=[OpenApiExample("boiler", value="boiler-1")],
)


class HttpIngestSchemaView(APIView):
    """Carry the schema of telemetry.http_ingest.device_telemetry; never routed."""

    authentication_classes = [BasicAuthentication]  # shown as HTTP Basic uid:token

    @extend_schema(
        operation_id="device_telemetry_create",
        summary="Send a device's readings over HTTP (HTTP Basic uid:token)",
        description=(
            "For devices that cannot keep an MQTT session, and for backfilling history. "
            "Authenticate with HTTP Basic `uid:token` (the device's MQTT credentials). "
            "The body is native JSON (one object or an array of them), SenML, or CSV rows "
            "`ts,metric,value` (the header line optional), at most 1 MiB "
            "(HUB_HTTP_INGEST_MAX_BYTES) and 10 000 readings (HUB_HTTP_INGEST_MAX_READINGS). "
            "The readings follow MQTT's rules and path, and the answer comes once they are "
            "stored; each rejected reading is listed with the index of the element it came from."
        ),
        parameters=[UID],
        request={
            JSON_FORM: NATIVE_SCHEMA,
            SENML_FORM: SENML_SCHEMA,
            CSV_FORM: OpenApiTypes.STR,
        },
        responses={
            200: OpenApiResponse(IngestAnswer, description="Stored; rejections by index."),
            400: OpenApiResponse(
                VALIDATION_ERRORS_SCHEMA,
                description="The body refused whole: `body` says why.",
                examples=[
                    OpenApiExample(
                        "not JSON", value={"body": ["invalid_json: unexpected character"]}
                    )
                ],
            ),
            401: OpenApiResponse(
                DetailSerializer,
                description="No HTTP Basic credentials, or not this device's uid and token.",
                examples=[
                    OpenApiExample(
                        "wrong token",
                        value={
                            "detail": "HTTP Basic credentials of this device (uid:token) "
                            "are required"
                        },
                    )
                ],
            ),
            404: OpenApiResponse(
                description="Not a path of the API (a uid holding a `/`). An unknown device "
                "is 401, like a wrong token, so that uids cannot be probed."
            ),
            415: OpenApiResponse(
                VALIDATION_ERRORS_SCHEMA,
                description="Another content type: `content_type` lists the accepted ones.",
                examples=[
                    OpenApiExample(
                        "xml",
                        value={
                            "content_type": [
                                "unsupported media type 'application/xml'; send one of: "
                                "application/json, application/senml+json, text/csv"
                            ]
                        },
                    )
                ],
            ),
            429: error_responses(429)[429],
            503: OpenApiResponse(
                DetailSerializer,
                description="Not confirmed stored in time (HUB_HTTP_INGEST_TIMEOUT_SECONDS): "
                "send the same body again; readings with a ts are stored once.",
            ),
        },
        examples=[
            OpenApiExample(
                "native JSON", value=NATIVE_EXAMPLE, request_only=True, media_type=JSON_FORM
            ),
            OpenApiExample("SenML", value=SENML_EXAMPLE, request_only=True, media_type=SENML_FORM),
            OpenApiExample("CSV", value=CSV_EXAMPLE, request_only=True, media_type=CSV_FORM),
            OpenApiExample(
                "stored, one rejected", value=ANSWER_EXAMPLE, response_only=True, status_codes=[200]
            ),
        ],
        tags=["devices"],
    )
    def post(self, request: Request, uid: str) -> Response:  # pragma: no cover - never routed
        raise NotImplementedError("served by telemetry.http_ingest.device_telemetry")


def http_ingest_endpoint(*, endpoints: list[tuple[str, str, str, Any]]) -> list[Any]:
    """Add HTTP ingest to the endpoints drf-spectacular describes (a preprocessing hook)."""
    return [*endpoints, (PATH, PATH_REGEX, "POST", HttpIngestSchemaView.as_view())]
