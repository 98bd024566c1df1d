"""Read paths of the dashboard pages: a bounded slice of each device's latest values."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, F, QuerySet, Window
from django.db.models.functions import RowNumber

from devices.models import Device
from telemetry.models import LatestValue
from telemetry.selectors import LatestValues
from telemetry.values import columns_to_value, datetime_to_ms


@dataclass(slots=True)
class LatestSlice:
    """The first metrics of a device by name, with their latest values, and how many it has."""

    values: LatestValues = field(default_factory=dict)
    total: int = 0


def latest_slices(*, devices: QuerySet[Device], per_device: int) -> dict[int, LatestSlice]:
    """Return the latest values of each device's first `per_device` metrics and its metric count.

    One query whatever the number of metrics; devices without readings are absent.
    """
    rows = (
        LatestValue.objects.filter(device__in=devices.values("pk"))
        .annotate(
            rank=Window(RowNumber(), partition_by=[F("device_id")], order_by=F("metric").asc()),
            total=Window(Count("*"), partition_by=[F("device_id")]),
        )
        .filter(rank__lte=per_device)
        .order_by("device_id", "metric")
        .values_list("device_id", "metric", "ts", "value", "text", "kind", "unit", "total")
    )
    slices: dict[int, LatestSlice] = {}
    for device_id, metric, ts, value, text, kind, unit, total in rows:
        found = slices.setdefault(device_id, LatestSlice(total=total))
        found.values[metric] = (datetime_to_ms(ts), columns_to_value(value, text, kind), unit)
    return slices
