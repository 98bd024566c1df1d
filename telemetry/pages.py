"""Dashboard pages (login required): the fleet and one device, updated live over the WebSocket."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import path
from django.utils import timezone

from alarms.overview import (
    DeviceAlarms,
    active_by_device,
    device_alarms,
    rules_applying,
    rules_slice,
)
from alarms.pages import form_choices
from core.requests import AuthenticatedHttpRequest
from devices.api_attributes import attributes_body
from devices.api_commands import CommandSerializer
from devices.attribute_services import attributes_get
from devices.models import Command, Device
from devices.selectors import device_get, device_list
from devices.serializers import DeviceSerializer
from devices.services import COMMAND_TIMEOUT_DEFAULT_S, COMMAND_TIMEOUT_MAX_S
from telemetry.overview import LatestSlice, latest_slices
from telemetry.serializers import latest_json
from telemetry.values import datetime_to_ms

# Whatever a device holds, a page carries a bounded slice of it: the fleet shows the
# first few metrics of each device by name and "+N more"; the device page lists up
# to DEVICE_METRICS to search and chart.
FLEET_VALUES = 6
DEVICE_METRICS = 250
# Alarms likewise: the fleet lists each device's worst few active alarms (and counts them
# all); the device page its newest active and cleared ones, and the first rules that apply.
FLEET_ALARMS = 10
DEVICE_ACTIVE_ALARMS = 20
DEVICE_CLEARED_ALARMS = 5
DEVICE_RULES = 50


def device_state(
    device: Device, latest: LatestSlice, alarms: DeviceAlarms | None = None
) -> dict[str, Any]:
    """Shape a device, a slice of its latest values and its metric count (REST shapes)."""
    return {
        **DeviceSerializer(device).data,
        "latest": latest_json(latest.values),
        "metrics": latest.total,
        "alarms": (alarms or DeviceAlarms()).as_json(),
    }


# Commands the device page lists when it loads; it reads them again from REST once live.
RECENT_COMMANDS = 20


def page_context(**data: Any) -> dict[str, Any]:
    """Return the JSON a page script starts from, with the server's clock for "ago" texts."""
    return {"data": {**data, "server_now": datetime_to_ms(timezone.now())}}


@login_required
def fleet(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Show every device the user owns with its state and its first few latest values."""
    owned = device_list(owner=request.user)
    latest = latest_slices(devices=owned, per_device=FLEET_VALUES)
    alarms = active_by_device(owner=request.user, per_device=FLEET_ALARMS)
    devices = [
        device_state(device, latest.get(device.pk, LatestSlice()), alarms.get(device.pk))
        for device in owned
    ]
    context = page_context(devices=devices, fleet_values=FLEET_VALUES)
    return render(request, "telemetry/fleet.html", {**context, "nav": "devices"})


@login_required
def device_detail(request: AuthenticatedHttpRequest, uid: str) -> HttpResponse:
    """Show one own device: charts, history, commands, attributes, alarms, rules; others' 404."""
    device = device_get(owner=request.user, uid=uid)
    if device is None:
        raise Http404("no such device")
    commands = (
        Command.objects.filter(device=device)
        .select_related("device")
        .order_by("-created")[:RECENT_COMMANDS]
    )
    one = Device.objects.filter(pk=device.pk)
    latest = latest_slices(devices=one, per_device=DEVICE_METRICS).get(device.pk, LatestSlice())
    owner = request.user
    rules = rules_applying(owner=owner, device=device)
    context = page_context(
        device=device_state(device, latest),
        commands=CommandSerializer(commands, many=True).data,
        command_timeout={"default": COMMAND_TIMEOUT_DEFAULT_S, "max": COMMAND_TIMEOUT_MAX_S},
        attributes=attributes_body(attributes_get(device=device)),
        alarms=device_alarms(
            owner=owner,
            device=device,
            active=DEVICE_ACTIVE_ALARMS,
            cleared=DEVICE_CLEARED_ALARMS,
        ),
        cleared_alarms=DEVICE_CLEARED_ALARMS,
        rules=rules_slice(rules, size=DEVICE_RULES),
    )
    extra = {"device": device, "nav": "devices", **form_choices()}
    return render(request, "telemetry/device.html", {**context, **extra})


def favicon(request: HttpRequest) -> HttpResponse:
    """Send /favicon.ico (asked for by browsers on any page, JSON ones too) to the SVG icon."""
    return HttpResponsePermanentRedirect(static("telemetry/favicon.svg"))


urlpatterns = [
    path("", fleet, name="fleet"),
    path("devices/<str:uid>/", device_detail, name="device-page"),
    path("favicon.ico", favicon, name="favicon"),
]
