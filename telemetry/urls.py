"""History endpoints under /api/v1/."""

from django.urls import path

from telemetry.api import DeviceLatestView, LatestView, ReadingsView, SeriesView

urlpatterns = [
    path("latest/", LatestView.as_view(), name="latest"),
    path("devices/<str:uid>/latest/", DeviceLatestView.as_view(), name="device-latest"),
    path("devices/<str:uid>/readings/", ReadingsView.as_view(), name="device-readings"),
    path("devices/<str:uid>/series/", SeriesView.as_view(), name="device-series"),
]
