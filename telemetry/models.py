"""Raw readings, their 1-minute and 1-hour rollups, and the latest value per metric."""

from __future__ import annotations

from django.db import models

from devices.models import Device
from telemetry.codec import UNIT_MAX_LENGTH


class ValueKind(models.IntegerChoices):
    """The JSON type a device sent, so the API returns the same type."""

    FLOAT = 0
    INT = 1
    BOOL = 2
    STR = 3


class Reading(models.Model):
    """One value of one metric of one device at one instant; stored once."""

    pk = models.CompositePrimaryKey("device", "metric", "ts")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=128)
    ts = models.DateTimeField()
    # Numbers and booleans (as 0/1) in `value`, strings in `text`.
    value = models.FloatField(null=True)
    # NULL, not "", marks a reading that is not a string.
    text = models.CharField(max_length=256, null=True)  # noqa: DJ001
    kind = models.PositiveSmallIntegerField(choices=ValueKind.choices)

    class Meta:
        db_table = "telemetry_reading"

    def __str__(self) -> str:
        return f"{self.device_id}/{self.metric}@{self.ts.isoformat()}"


class Rollup(models.Model):
    """Aggregates of the numeric readings of one metric in one time bucket."""

    pk = models.CompositePrimaryKey("device", "metric", "bucket")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=128)
    bucket = models.DateTimeField()
    count = models.BigIntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()
    first = models.FloatField()
    first_ts = models.DateTimeField()
    last = models.FloatField()
    last_ts = models.DateTimeField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.device_id}/{self.metric}@{self.bucket.isoformat()}"


class RollupMinute(Rollup):
    """Rollup over 1-minute buckets."""

    class Meta:
        db_table = "telemetry_rollup_1m"


class RollupHour(Rollup):
    """Rollup over 1-hour buckets."""

    class Meta:
        db_table = "telemetry_rollup_1h"


class LatestValue(models.Model):
    """The newest reading (by device timestamp) of each metric of each device."""

    pk = models.CompositePrimaryKey("device", "metric")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=128)
    ts = models.DateTimeField()
    value = models.FloatField(null=True)
    text = models.CharField(max_length=256, null=True)  # noqa: DJ001
    kind = models.PositiveSmallIntegerField(choices=ValueKind.choices)
    # The last unit the device gave for this metric (SenML `u`/`bu`); NULL when it never gave one.
    unit = models.CharField(max_length=UNIT_MAX_LENGTH, null=True)  # noqa: DJ001

    class Meta:
        db_table = "telemetry_latest"

    def __str__(self) -> str:
        return f"{self.device_id}/{self.metric}"
