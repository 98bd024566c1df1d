"""Root URLs: admin, login, REST API and its OpenAPI docs, health, metrics and pages."""

from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path

from hub.health import health
from hub.login import login_throttled
from hub.public import DocsView, SchemaView, metrics_endpoint

urlpatterns = [
    # Both login forms count password guesses per address, with the token endpoint.
    path("admin/login/", login_throttled(admin.site.login)),
    path("admin/", admin.site.urls),
    path("accounts/login/", login_throttled(LoginView.as_view())),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include("devices.urls")),
    path("api/v1/", include("telemetry.urls")),
    path("api/v1/", include("alarms.urls")),
    path("api/v1/", include("apikeys.urls")),
    path("api/v1/", include("provisioning.urls")),
    # The OpenAPI document and Swagger UI over it (static files from drf-spectacular-sidecar);
    # public unless HUB_PUBLIC_SCHEMA=false, like /metrics with HUB_PUBLIC_METRICS (hub/public.py).
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/docs/", DocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", health, name="healthz"),
    path("metrics", metrics_endpoint, name="metrics"),
    path("", include("alarms.pages")),
    path("", include("apikeys.pages")),
    path("", include("provisioning.pages")),
    path("", include("telemetry.pages")),
]
