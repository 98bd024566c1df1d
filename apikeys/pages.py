"""The /api-keys/ page (login required): list, create (the key shown once), revoke; no script."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apikeys.models import ApiKey
from apikeys.selectors import api_key_get, api_keys_of
from apikeys.serializers import ApiKeyCreateSerializer, api_key_data
from apikeys.services import api_key_create, api_key_delete, api_key_revoke
from core.conf import hub_settings
from core.requests import AuthenticatedHttpRequest

# Fields of the create form, in the order the page shows their errors.
FORM_FIELDS = ("name", "scope", "devices", "expires", "limit")


def form_input(post: Any) -> dict[str, Any]:
    """Translate the form into the REST body: devices comma- or space-separated, empty = all."""
    uids = post.get("devices", "").replace(",", " ").split()
    expires = post.get("expires", "").strip()
    return {
        "name": post.get("name", ""),
        "scope": post.get("scope", ""),
        "devices": uids or None,
        # <input type="datetime-local"> gives no zone: the page says it is UTC.
        "expires": f"{expires}Z" if expires and expires[-1:] not in "Zz" else expires or None,
    }


def _page(request: AuthenticatedHttpRequest, **extra: Any) -> HttpResponse:
    now = timezone.now()
    keys = [api_key_data(key, now=now) for key in api_keys_of(owner=request.user)]
    context = {
        "nav": "api-keys",
        "keys": keys,
        "scopes": ApiKey.Scope.choices,
        "limit": hub_settings.API_KEYS_PER_USER,
        "values": {"name": "", "scope": "read", "devices": "", "expires": ""},
        **extra,
    }
    return render(request, "apikeys/api_keys.html", context, status=extra.get("status", 200))


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def api_key_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Show the user's keys; a POST creates one and shows it this once."""
    if request.method != "POST":
        return _page(request)
    body = form_input(request.POST)
    serializer = ApiKeyCreateSerializer(data=body, context={"owner": request.user})
    errors: dict[str, list[str]] = {}
    if serializer.is_valid():
        limit = hub_settings.API_KEYS_PER_USER
        if api_keys_of(owner=request.user).count() >= limit:
            errors["limit"] = [
                f"At most {limit} API keys per user (HUB_API_KEYS_PER_USER); "
                "delete revoked keys to make room."
            ]
    else:
        errors = {name: [str(m) for m in messages] for name, messages in serializer.errors.items()}
    if errors:
        values = {
            "name": request.POST.get("name", "")[:100],
            "scope": request.POST.get("scope", "read"),
            "devices": request.POST.get("devices", "")[:4000],
            "expires": request.POST.get("expires", "")[:40],
        }
        ordered = [(name, errors[name]) for name in FORM_FIELDS if name in errors]
        return _page(request, errors=ordered, values=values, status=400)
    key, text = api_key_create(owner=request.user, **serializer.validated_data)
    # Rendered in this answer only: the key is stored nowhere in clear, not even the session.
    return _page(request, created={"name": key.name, "key": text})


@login_required
@require_POST
def api_key_revoke_page(request: AuthenticatedHttpRequest, key_id: int) -> HttpResponse:
    """Revoke one of the user's keys (delete it, if it was revoked), then show the list."""
    key = api_key_get(owner=request.user, key_id=key_id)
    if key is not None:
        if key.revoked_at is None:
            api_key_revoke(key=key)
        else:
            api_key_delete(key=key)
    return HttpResponseRedirect(reverse("api-keys-page"))


urlpatterns = [
    path("api-keys/", api_key_list, name="api-keys-page"),
    path("api-keys/<int:key_id>/revoke/", api_key_revoke_page, name="api-key-revoke-page"),
]
