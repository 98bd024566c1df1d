"""History endpoints and HTTP ingest under /api/v1/."""

from django.urls import path

from telemetry.api import DeviceLatestView, LatestView, ReadingsView, SeriesView
from telemetry.http_ingest import device_telemetry

urlpatterns = [
    path("latest/", LatestView.as_view(), name="latest"),
    path("devices/<str:uid>/latest/", DeviceLatestView.as_view(), name="device-latest"),
    path("devices/<str:uid>/readings/", ReadingsView.as_view(), name="device-readings"),
    path("devices/<str:uid>/series/", SeriesView.as_view(), name="device-series"),
    # HTTP ingest: devices authenticate with HTTP Basic uid:token, not as users.
    path("devices/<str:uid>/telemetry/", device_telemetry, name="device-telemetry"),
]
