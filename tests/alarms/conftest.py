"""Helpers for the alarms tests: rules, and the store as the ingest worker calls it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alarms.models import AlarmRule
from telemetry.services import StoredBatch, readings_store_batch

T0 = 1_764_139_200_000
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def store(uid: str, points: list[tuple[int, Any]], metric: str = "t", **kwargs: Any) -> StoredBatch:
    """Store (offset ms from T0, value) readings of one metric through the real store."""
    return readings_store_batch(
        readings=[(uid, metric, T0 + offset, value) for offset, value in points],
        received_at=kwargs.get("received_at", RECEIVED),
    )


def make_rule(owner: Any, device: Any = None, **fields: Any) -> AlarmRule:
    """Create a rule directly (the REST tests go through validation)."""
    fields.setdefault("metric", "t")
    fields.setdefault("severity", "major")
    fields.setdefault("name", "rule")
    return AlarmRule.objects.create(owner=owner, device=device, **fields)
