"""API key endpoints under /api/v1/ (CONTRACT §8)."""

from django.urls import path

import apikeys.openapi  # noqa: F401 - describes the Bearer scheme in /api/schema/
from apikeys.api import ApiKeyDetailView, ApiKeyListView

urlpatterns = [
    path("api-keys/", ApiKeyListView.as_view(), name="api-keys"),
    path("api-keys/<str:key_id>/", ApiKeyDetailView.as_view(), name="api-key"),
]
