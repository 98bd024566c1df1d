"""Read paths of the pages: alarms per device, a page of alarms, the rules that apply, the badge.

Each returns a bounded slice, whatever the number of alarms or rules, in the
shapes REST gives (alarms.serializers), so the pages' scripts read both alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import (
    Case,
    Count,
    F,
    IntegerField,
    Min,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber

from alarms.models import Alarm, AlarmRule, Severity
from alarms.selectors import alarms_of, rules_of
from alarms.serializers import RuleSerializer, alarm_data
from devices.models import Device

# Worst first, as Severity lists them.
SEVERITY_ORDER: tuple[str, ...] = tuple(Severity.values)


def _severity_rank() -> Case:
    """Rank severities as a database expression: 0 for the worst."""
    return Case(
        *(When(severity=name, then=Value(rank)) for rank, name in enumerate(SEVERITY_ORDER)),
        default=Value(len(SEVERITY_ORDER)),
        output_field=IntegerField(),
    )


def _severity_of(rank: int | None) -> str | None:
    return SEVERITY_ORDER[rank] if rank is not None and rank < len(SEVERITY_ORDER) else None


@dataclass(slots=True)
class DeviceAlarms:
    """A device's active alarms: how many, how many not acknowledged, the worst, a few of them."""

    active: int = 0
    unacknowledged: int = 0
    worst: str | None = None
    # The worst few: {"id", "severity", "acknowledged"}; `active` says how many there are.
    open: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Return the page's JSON shape."""
        return {
            "active": self.active,
            "unacknowledged": self.unacknowledged,
            "worst": self.worst,
            "open": self.open,
        }


def active_by_device(*, owner: User, per_device: int) -> dict[int, DeviceAlarms]:
    """Return each device's active alarms, the `per_device` worst listed; one query.

    Devices without an active alarm are absent.
    """
    by_device = [F("device_id")]
    rows = (
        Alarm.objects.filter(
            owner=owner,
            state=Alarm.State.ACTIVE,
            device__in=Device.objects.filter(owner=owner).values("pk"),
        )
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=by_device,
                order_by=[_severity_rank().asc(), F("id").desc()],
            ),
            total=Window(Count("*"), partition_by=by_device),
            unacknowledged=Window(
                Sum(Case(When(acknowledged=False, then=Value(1)), default=Value(0))),
                partition_by=by_device,
            ),
        )
        .filter(rank__lte=per_device)
        .order_by("device_id", "rank")
        .values_list("device_id", "id", "severity", "acknowledged", "total", "unacknowledged")
    )
    found: dict[int, DeviceAlarms] = {}
    for device_id, alarm_id, severity, acknowledged, total, unacknowledged in rows:
        summary = found.get(device_id)
        if summary is None:
            # Rows come worst first: the first one names the device's worst severity.
            summary = found[device_id] = DeviceAlarms(total, unacknowledged or 0, severity)
        summary.open.append({"id": alarm_id, "severity": severity, "acknowledged": acknowledged})
    return found


@dataclass(frozen=True, slots=True)
class Unacknowledged:
    """What the header badge shows: active alarms nobody acknowledged, and the worst of them."""

    count: int
    worst: str | None


def unacknowledged_count(*, owner: User) -> Unacknowledged:
    """Count the user's active, unacknowledged alarms; name the worst severity among them."""
    found = Alarm.objects.filter(
        owner=owner, state=Alarm.State.ACTIVE, acknowledged=False
    ).aggregate(count=Count("id"), worst=Min(_severity_rank()))
    return Unacknowledged(found["count"] or 0, _severity_of(found["worst"]))


@dataclass(frozen=True, slots=True)
class AlarmsPage:
    """One page of alarms in REST's shape; whether older ones exist; whether it is the first."""

    alarms: list[dict[str, Any]]
    more: bool
    first: bool


def alarms_page(
    *, owner: User, filters: dict[str, Any], before: int | None, size: int
) -> AlarmsPage:
    """Return up to `size` of the user's alarms newest first, older than alarm `before` if given.

    Keyset paging on (started, id): as cheap on the thousandth page as on the first,
    and stable while new alarms arrive. A `before` that is not one of the user's
    alarms gives the first page.
    """
    alarms = alarms_of(owner=owner, filters=filters).order_by("-started", "-id")
    started = None
    if before is not None:
        anchor = Alarm.objects.filter(owner=owner, id=before).values_list("started", flat=True)
        started = anchor.first()
    if started is not None:
        alarms = alarms.filter(Q(started__lt=started) | Q(started=started, id__lt=before))
    found = list(alarms[: size + 1])
    return AlarmsPage([alarm_data(alarm) for alarm in found[:size]], len(found) > size, not started)


def device_alarms(
    *, owner: User, device: Device, active: int, cleared: int
) -> list[dict[str, Any]]:
    """Return a device's newest `active` active alarms and its newest `cleared` cleared ones."""
    alarms = alarms_of(owner=owner, filters={"device": device.uid}).order_by("-started", "-id")
    found = list(alarms.filter(state=Alarm.State.ACTIVE)[:active])
    found += alarms.filter(state=Alarm.State.CLEARED)[:cleared]
    return [alarm_data(alarm) for alarm in found]


def rules_applying(*, owner: User, device: Device | None) -> QuerySet[AlarmRule]:
    """Return the user's rules that watch `device` (its own and the all-device ones), or all."""
    rules = rules_of(owner=owner)
    if device is not None:
        rules = rules.filter(Q(device=device) | Q(device__isnull=True))
    return rules


def rules_slice(rules: QuerySet[AlarmRule], *, size: int) -> dict[str, Any]:
    """Return the first `size` rules in REST's shape, and how many there are in all."""
    shown = list(rules[:size])
    total = len(shown) if len(shown) < size else rules.count()
    # djangorestframework-stubs take one instance even with many=True.
    return {"items": list(RuleSerializer(cast(Any, shown), many=True).data), "total": total}
