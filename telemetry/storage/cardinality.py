"""Decide which new metrics a batch may create under the per-device limit (both backends)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# (device id, metric) -> readings of it in the batch.
Refused = dict[tuple[int, str], int]


def metrics_refused(
    new: Iterable[tuple[int, str, int]], existing: Mapping[int, int], limit: int
) -> Refused:
    """Return the new (device id, metric) pairs beyond `limit` metrics per device.

    `new` holds (device id, metric, readings in the batch) of the metrics the
    device does not have yet; `existing` how many it has. The new metrics are
    admitted in name order, so a batch sent again is decided the same way.
    """
    refused: Refused = {}
    room: dict[int, int] = {}
    for device_id, metric, readings in sorted(new):
        left = room.setdefault(device_id, limit - existing.get(device_id, 0))
        if left > 0:
            room[device_id] = left - 1
        else:
            refused[(device_id, metric)] = readings
    return refused
