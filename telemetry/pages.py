"""Dashboard pages (login required): the fleet list, updated live over the WebSocket."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from telemetry.models import LatestValue
from telemetry.values import columns_to_value


@login_required
def fleet(request: HttpRequest) -> HttpResponse:
    """Show every device the user owns with its latest values."""
    devices = list(request.user.devices.order_by("uid"))  # type: ignore[union-attr]
    latest: dict[int, list[tuple[str, object]]] = {}
    rows = LatestValue.objects.filter(device__in=devices).order_by("metric")
    for row in rows.values_list("device_id", "metric", "value", "text", "kind"):
        latest.setdefault(row[0], []).append((row[1], columns_to_value(*row[2:])))
    fleet_rows = [(device, latest.get(device.pk, [])) for device in devices]
    return render(request, "telemetry/fleet.html", {"fleet": fleet_rows})


urlpatterns = [path("", fleet, name="fleet")]
