"""Django admin for devices; the token is shown once, in a message, never stored in clear."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from devices.broker import uid_reserved
from devices.models import Device
from devices.services import (
    RESERVED_UID_MESSAGE,
    device_add,
    device_delete,
    device_rotate_token,
    device_update,
)


class OwnedAdmin(admin.ModelAdmin):
    """An admin in which a user who is not a superuser sees and picks only their own rows.

    Staff users such as `hub serve`'s demo user open the admin on their own devices,
    rules, alarms and webhooks; every list, form, lookup and choice leaves out other
    users' rows. Superusers see everything.
    """

    owner_field = "owner"  # the lookup from the model to the user who owns a row

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{self.owner_field: request.user})

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelChoiceField | None:
        if not request.user.is_superuser:
            related = db_field.related_model
            if related is get_user_model():
                kwargs["queryset"] = related.objects.filter(pk=request.user.pk)
            elif related is Device:
                kwargs["queryset"] = Device.objects.filter(owner=request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


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
class DeviceAdmin(OwnedAdmin):
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
        if not change:
            # Through the service, so a managed broker drops what it held under the uid
            # and gets the token, inside the admin's transaction.
            _show_token(request, obj, device_add(device=obj))
            return
        super().save_model(request, obj, form, change)
        if "active" in form.changed_data:
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
