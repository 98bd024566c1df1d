"""The endpoints anyone may read unless the operator closes them: /metrics and the API's schema.

HUB_PUBLIC_METRICS=false serves /metrics to staff users only (a session, or
`Authorization: Token <key>` of a staff user, as a Prometheus scrape can send);
HUB_PUBLIC_SCHEMA=false serves /api/schema/ and /api/docs/ to signed-in users only.
Both are read on each request.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny, BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from core.conf import hub_settings
from hub.metrics import metrics_view


class _SchemaAccess:
    """Anyone, or signed-in users only, as HUB_PUBLIC_SCHEMA says."""

    def get_permissions(self) -> list[BasePermission]:
        return [AllowAny() if hub_settings.PUBLIC_SCHEMA else IsAuthenticated()]


class SchemaView(_SchemaAccess, SpectacularAPIView):
    """GET /api/schema/: the OpenAPI document."""


class DocsView(_SchemaAccess, SpectacularSwaggerSplitView):
    """GET /api/docs/: Swagger UI, its start-up script served apart (?script) for the CSP."""

    template_name = "hub/swagger_ui.html"


class _StaffMetricsView(APIView):
    """/metrics for staff users only."""

    permission_classes = [IsAdminUser]
    schema = None

    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return metrics_view(request._request)


_staff_metrics = _StaffMetricsView.as_view()


def metrics_endpoint(request: HttpRequest) -> HttpResponse:
    """GET /metrics: to anyone, or to staff only when HUB_PUBLIC_METRICS is off."""
    if hub_settings.PUBLIC_METRICS:
        return metrics_view(request)
    return _staff_metrics(request)
