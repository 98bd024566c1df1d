"""Provisioning endpoints under /api/v1/."""

from django.urls import path

from provisioning.api import ClaimView, KeyDetailView, KeyListView

urlpatterns = [
    path("provisioning-keys/", KeyListView.as_view(), name="provisioning-keys"),
    path("provisioning-keys/<str:key_id>/", KeyDetailView.as_view(), name="provisioning-key"),
    path("provision/", ClaimView.as_view(), name="provision"),
]
