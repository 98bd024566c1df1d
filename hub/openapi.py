"""Additions to the whole OpenAPI document (SPECTACULAR_SETTINGS POSTPROCESSING_HOOKS)."""

from __future__ import annotations

from typing import Any

UNSUPPORTED_MEDIA_TYPE = {
    "description": "The body's Content-Type is missing or not one this operation reads.",
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/Detail"},
            "examples": {
                "NoContentType": {
                    "value": {"detail": 'Unsupported media type "" in request.'},
                    "summary": "no Content-Type",
                }
            },
        }
    },
}


def unsupported_media_type(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Document 415 on every operation that takes a body: DRF answers it to any such request
    whose Content-Type none of the operation's parsers reads (or that has none)."""
    for item in result.get("paths", {}).values():
        for operation in item.values():
            if "requestBody" in operation:
                operation["responses"].setdefault("415", UNSUPPORTED_MEDIA_TYPE)
    return result
