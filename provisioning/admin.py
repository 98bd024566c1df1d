"""Django admin for provisioning keys: listed and revocable by their owner, never created there."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from devices.admin import OwnedAdmin
from provisioning.models import ProvisioningKey
from provisioning.services import key_revoke


@admin.register(ProvisioningKey)
class ProvisioningKeyAdmin(OwnedAdmin):
    """Keys by owner and state; the revoke action also removes a key's broker account."""

    list_display = (
        "name",
        "key",
        "owner",
        "devices_claimed",
        "max_devices",
        "uid_prefix",
        "expires",
        "revoked_at",
        "created",
    )
    list_filter = (("owner", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("owner",)
    search_fields = ("name", "key", "uid_prefix")
    fields = (
        "name",
        "key",
        "owner",
        "devices_claimed",
        "max_devices",
        "uid_prefix",
        "expires",
        "revoked_at",
        "created",
    )
    # The limits are checked by the service that creates a key; here only the name changes.
    readonly_fields = tuple(field for field in fields if field != "name")
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Keys are made on /provisioning-keys/ or over REST, where the secret is shown once."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        """Revoke instead: it removes the key's broker account, and its row tells who claimed."""
        return False

    @admin.action(description="Revoke the selected provisioning keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ProvisioningKey]) -> None:
        """Revoke each selected key (a managed broker drops its account)."""
        for key in queryset:
            key_revoke(key=key)
        self.message_user(request, f"Revoked {len(queryset)} provisioning key(s).")
