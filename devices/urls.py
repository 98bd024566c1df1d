"""Device endpoints under /api/v1/."""

from django.urls import path

from devices.api_commands import CommandDetailView, DeviceCommandsView, DevicePresenceView
from devices.views import DeviceDetailView, DeviceListView, DeviceRotateTokenView, TokenObtainView

urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="auth-token"),
    path("devices/", DeviceListView.as_view(), name="device-list"),
    path("devices/<str:uid>/", DeviceDetailView.as_view(), name="device-detail"),
    path(
        "devices/<str:uid>/rotate-token/",
        DeviceRotateTokenView.as_view(),
        name="device-rotate-token",
    ),
    path("devices/<str:uid>/commands/", DeviceCommandsView.as_view(), name="device-commands"),
    path("devices/<str:uid>/presence/", DevicePresenceView.as_view(), name="device-presence"),
    path("commands/<str:command_id>/", CommandDetailView.as_view(), name="command-detail"),
]
