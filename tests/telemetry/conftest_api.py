"""Helpers for the REST API tests, imported explicitly (not a conftest pytest loads)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AbstractUser
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from telemetry.services import StoredBatch, readings_store_batch

T0 = 1_764_136_800_000  # 2025-11-26T06:00:00.000Z, a whole day plus 6 h
RECEIVED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def api_client(user: AbstractUser) -> APIClient:
    """Return an API client that authenticates as the user with their API token."""
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def store(readings: Sequence[tuple[str, str, int, Any]]) -> StoredBatch:
    """Store readings as the ingest consumer would."""
    return readings_store_batch(readings=readings, received_at=RECEIVED_AT)


def field_errors(response: Any) -> dict[str, list[str]]:
    """Return a 400 response's field messages, checking their shape."""
    assert response.status_code == 400, (response.status_code, response.content[:500])
    body = response.json()
    assert isinstance(body, dict) and body
    for messages in body.values():
        assert isinstance(messages, list) and all(isinstance(m, str) for m in messages)
    return body


def response_json(response: Any) -> Any:
    """Return a response's JSON body, streamed (device lists, fleet latest) or not."""
    if response.streaming:
        return json.loads(b"".join(response.streaming_content))
    return response.json()
