"""Dashboard pages (login required): the fleet and one device, updated live over the WebSocket."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from devices.api_commands import CommandSerializer
from devices.models import Command, Device
from devices.selectors import device_get, device_list
from devices.serializers import DeviceSerializer
from devices.services import COMMAND_TIMEOUT_DEFAULT_S, COMMAND_TIMEOUT_MAX_S
from telemetry.selectors import LatestValues, latest_for_device, latest_for_owner
from telemetry.serializers import latest_json
from telemetry.values import datetime_to_ms


def device_state(device: Device, latest: LatestValues) -> dict[str, Any]:
    """Shape a device and its latest values as the page scripts start from (REST shapes)."""
    return {**DeviceSerializer(device).data, "latest": latest_json(latest)}


# Commands the device page lists when it loads; it reads them again from REST once live.
RECENT_COMMANDS = 20


def page_context(**data: Any) -> dict[str, Any]:
    """Return the JSON a page script starts from, with the server's clock for "ago" texts."""
    return {"data": {**data, "server_now": datetime_to_ms(timezone.now())}}


@login_required
def fleet(request: HttpRequest) -> HttpResponse:
    """Show every device the user owns with its state and latest values."""
    latest = latest_for_owner(owner=request.user)  # type: ignore[arg-type]
    devices = [
        device_state(device, latest.get(device.uid, {}))
        for device in device_list(owner=request.user)  # type: ignore[arg-type]
    ]
    return render(request, "telemetry/fleet.html", page_context(devices=devices))


@login_required
def device_detail(request: HttpRequest, uid: str) -> HttpResponse:
    """Show one own device: live charts, history, CSV export, commands; others' are 404."""
    device = device_get(owner=request.user, uid=uid)  # type: ignore[arg-type]
    if device is None:
        raise Http404("no such device")
    commands = (
        Command.objects.filter(device=device)
        .select_related("device")
        .order_by("-created")[:RECENT_COMMANDS]
    )
    context = page_context(
        device=device_state(device, latest_for_device(device=device)),
        commands=CommandSerializer(commands, many=True).data,
        command_timeout={"default": COMMAND_TIMEOUT_DEFAULT_S, "max": COMMAND_TIMEOUT_MAX_S},
    )
    return render(request, "telemetry/device.html", {**context, "device": device})


urlpatterns = [
    path("", fleet, name="fleet"),
    path("devices/<str:uid>/", device_detail, name="device-page"),
]
