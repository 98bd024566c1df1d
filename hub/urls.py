"""Root URLs: admin, login, REST API and its OpenAPI docs, health, metrics and pages."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hub.health import health
from hub.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include("devices.urls")),
    path("api/v1/", include("telemetry.urls")),
    # The OpenAPI document and Swagger UI over it (static files from drf-spectacular-sidecar).
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", health, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("", include("telemetry.pages")),
]
