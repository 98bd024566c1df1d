"""Report the readings a stored batch refused for creating too many metrics, per topic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from telemetry.codec import TOO_MANY_METRICS, Rejection

# Metric names one error message lists; its count covers the rest.
NAMES_LISTED = 10


@dataclass(slots=True)
class _Refused:
    uid: str
    metrics: dict[str, None] = field(default_factory=dict)  # in order of arrival
    readings: int = 0


def too_many_metrics(
    readings: Sequence[Sequence[Any]],
    topics: Sequence[tuple[int, str]],
    refused: object,
    limit: object,
) -> list[tuple[str, str, Rejection, int]]:
    """Return (topic, uid, rejection, readings) for each topic whose new metrics were refused.

    `topics` holds (index of its first reading, topic) of each message of the
    batch; `refused` ({uid: {metric: readings}}) is what the ingest worker refused.
    """
    if not isinstance(refused, Mapping) or not refused:
        return []
    by_topic: dict[str, _Refused] = {}
    ends = [start for start, _ in topics[1:]] + [len(readings)]
    for (start, topic), end in zip(topics, ends, strict=True):
        for reading in readings[start:end]:
            metrics = refused.get(reading[0])
            if isinstance(metrics, Mapping) and reading[1] in metrics:
                found = by_topic.setdefault(topic, _Refused(reading[0]))
                found.metrics[reading[1]] = None
                found.readings += 1
    result = []
    for topic, found in by_topic.items():
        names = list(found.metrics)
        listed = ", ".join(names[:NAMES_LISTED]) + (", …" if len(names) > NAMES_LISTED else "")
        detail = (
            f"the device has the most metrics allowed (HUB_MAX_METRICS_PER_DEVICE={limit}); "
            f"{found.readings} readings of {len(names)} new metrics not stored: {listed}"
        )
        result.append((topic, found.uid, Rejection(TOO_MANY_METRICS, detail), found.readings))
    return result
