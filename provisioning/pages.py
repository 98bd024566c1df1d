"""The /provisioning-keys/ page (login required): list, create and revoke keys, without script."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_http_methods

from core.requests import AuthenticatedHttpRequest
from devices.broker import BrokerUnavailable
from provisioning.selectors import key_get, keys_of
from provisioning.services import key_create, key_revoke

# Keys the page lists, newest first.
KEYS_SHOWN = 200


class KeyForm(forms.Form):
    """The creation form: every field optional, as in the REST API."""

    name = forms.CharField(max_length=128, required=False)
    max_devices = forms.IntegerField(min_value=1, max_value=2_000_000_000, required=False)
    expires = forms.DateTimeField(
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        help_text="UTC",
    )
    uid_prefix = forms.CharField(max_length=63, required=False, strip=False)


@login_required
@require_http_methods(["GET", "POST"])
def keys_page(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Show the user's keys; POST creates one and shows its secret on this answer only."""
    form = KeyForm(request.POST if request.method == "POST" else None)
    created = None
    problem = None
    if request.method == "POST" and form.is_valid():
        fields: dict[str, Any] = dict(form.cleaned_data)
        if fields["expires"] is not None:
            fields["expires"] = fields["expires"].astimezone(UTC)
        try:
            created = key_create(owner=request.user, **fields)
            form = KeyForm()
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
        except BrokerUnavailable as error:
            problem = str(error.detail)
    keys = list(keys_of(owner=request.user)[:KEYS_SHOWN])
    status = 400 if request.method == "POST" and created is None else 200
    context = {"form": form, "keys": keys, "created": created, "problem": problem, "nav": "keys"}
    response = render(request, "provisioning/keys.html", context, status=status)
    # The secret is on this page only: keep it out of caches and the back button's copy.
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["POST"])
def key_revoke_page(request: AuthenticatedHttpRequest, key_id: str) -> HttpResponse:
    """Revoke one of the user's keys, then show the list again."""
    key = key_get(owner=request.user, key_id=key_id)
    if key is None:
        return render(request, "provisioning/keys_missing.html", status=404)
    key_revoke(key=key)
    return HttpResponseRedirect(reverse("provisioning-keys-page"))


urlpatterns = [
    path("provisioning-keys/", keys_page, name="provisioning-keys-page"),
    path("provisioning-keys/<str:key_id>/revoke/", key_revoke_page, name="provisioning-key-revoke"),
]
