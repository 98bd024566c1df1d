"""Django admin for devices; the token is shown once, in a message, never stored in clear."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from devices.broker import uid_reserved
from devices.models import Device
from devices.services import (
    RESERVED_UID_MESSAGE,
    device_delete,
    device_rotate_token,
    device_update,
)


class DeviceForm(forms.ModelForm):
    """The device form, refusing uids that name the hub's own MQTT accounts."""

    class Meta:
        model = Device
        fields = ("uid", "name", "owner", "active")

    def clean_uid(self) -> str:
        """Refuse a reserved uid (only asked when adding: the uid is fixed afterwards)."""
        uid = str(self.cleaned_data["uid"])
        if uid_reserved(uid):
            raise forms.ValidationError(RESERVED_UID_MESSAGE)
        return uid


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    """List, search and filter devices; adding one or rotating tokens shows the new token once."""

    list_display = ("uid", "name", "owner", "active", "online", "last_seen", "created")
    list_filter = ("active", "online", ("owner", admin.RelatedOnlyFieldListFilter))
    search_fields = ("uid", "name")
    list_select_related = ("owner",)
    readonly_fields = ("online", "last_seen", "created")
    exclude = ("token_hash",)
    ordering = ("uid",)
    actions = ("rotate_tokens",)
    form = DeviceForm

    def get_readonly_fields(
        self, request: HttpRequest, obj: Device | None = None
    ) -> tuple[str, ...]:
        # The uid is the device's MQTT username: fixed once registered.
        fields = tuple(self.readonly_fields)
        return (*fields, "uid") if obj is not None else fields

    def save_model(self, request: HttpRequest, obj: Device, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            # Saved without a usable token first (no token hashes to ""), then given
            # one, inside the admin's transaction.
            token = device_rotate_token(device=obj)
            _show_token(request, obj, token)
        elif "active" in form.changed_data:
            # Through the service, so a managed broker enables or disables the client too.
            device_update(device=obj, active=obj.active)

    def delete_model(self, request: HttpRequest, obj: Device) -> None:
        device_delete(device=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            device_delete(device=device)

    @admin.action(description="Rotate the token of the selected devices")
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        """Give each selected device a new token and show it once."""
        for device in queryset:
            _show_token(request, device, device_rotate_token(device=device))


def _show_token(request: HttpRequest, device: Device, token: Any) -> None:
    messages.warning(request, f"Token of {device.uid} (shown once, copy it now): {token}")
