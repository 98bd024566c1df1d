"""Root URLs: admin, login, REST API, health and pages."""

from django.contrib import admin
from django.urls import include, path

from hub.health import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include("devices.urls")),
    path("api/v1/", include("telemetry.urls")),
    path("healthz", health, name="healthz"),
    path("", include("telemetry.pages")),
]
