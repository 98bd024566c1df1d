"""Django admin for API keys: listed and revocable by their owner, never shown or created there."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apikeys.models import ApiKey
from apikeys.services import api_key_revoke
from devices.admin import OwnedAdmin


@admin.register(ApiKey)
class ApiKeyAdmin(OwnedAdmin):
    """Keys by owner, scope and state; the revoke action stops them at once.

    A staff user who is not a superuser (the demo user) sees only their own keys.
    """

    list_display = (
        "name",
        "prefix",
        "owner",
        "scope",
        "limited",
        "expires",
        "revoked_at",
        "last_used_at",
        "created",
    )
    list_filter = ("scope", "limited", ("owner", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("owner",)
    search_fields = ("name", "prefix", "owner__username")
    readonly_fields = (
        "owner",
        "prefix",
        "scope",
        "limited",
        "devices",
        "revoked_at",
        "last_used_at",
        "created",
    )
    fields = ("name", "owner", "prefix", "scope", "limited", "devices", "expires")
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Keys are made on /api-keys/ or over REST, where the key can be shown once."""
        return False

    @admin.action(description="Revoke the selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        """Revoke each selected key."""
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {len(queryset)} API key(s).")
