"""Django admin for alarm rules, alarms (with their events) and webhooks (with deliveries)."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from alarms.addresses import AddressRefused, url_check
from alarms.models import Alarm, AlarmEvent, AlarmRule, Delivery, Webhook
from devices.admin import OwnedAdmin


class WebhookForm(forms.ModelForm):
    """The webhook form, refusing URLs whose host is not public (as REST does)."""

    url = forms.URLField(max_length=2048, assume_scheme="https")

    class Meta:
        model = Webhook
        fields = ("owner", "url", "secret", "enabled")

    def clean_url(self) -> str:
        """Resolve the host and refuse non-public addresses unless HUB_WEBHOOK_ALLOW_PRIVATE."""
        url = str(self.cleaned_data["url"])
        try:
            url_check(url)
        except AddressRefused as error:
            raise forms.ValidationError(str(error)) from None
        return url


@admin.register(AlarmRule)
class AlarmRuleAdmin(OwnedAdmin):
    """Rules by owner, condition and severity."""

    list_display = ("name", "owner", "device", "metric", "condition", "severity", "enabled")
    list_filter = ("condition", "severity", "enabled", ("owner", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "metric", "device__uid")
    list_select_related = ("owner", "device")
    raw_id_fields = ("device",)
    readonly_fields = ("created", "updated", "watch_from")


class AlarmEventInline(admin.TabularInline):
    """An alarm's changes, oldest first; written by the hub only."""

    model = AlarmEvent
    extra = 0
    can_delete = False
    readonly_fields = ("kind", "at", "user", "value")

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Alarm)
class AlarmAdmin(OwnedAdmin):
    """Alarms, newest first; their state changes through REST or the rule, not by editing."""

    list_display = ("name", "device", "severity", "state", "acknowledged", "started", "cleared")
    list_filter = ("state", "acknowledged", "severity")
    search_fields = ("name", "metric", "device__uid")
    list_select_related = ("device",)
    readonly_fields = [field.name for field in Alarm._meta.fields]
    inlines = [AlarmEventInline]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Webhook)
class WebhookAdmin(OwnedAdmin):
    """Webhooks by owner."""

    list_display = ("url", "owner", "enabled", "created")
    list_filter = ("enabled",)
    search_fields = ("url",)
    form = WebhookForm


@admin.register(Delivery)
class DeliveryAdmin(OwnedAdmin):
    """The outbox: what was sent where, how often, and the last error."""

    owner_field = "webhook__owner"

    list_display = ("uid", "webhook", "event", "state", "attempts", "last_status", "created")
    list_filter = ("state", "event")
    readonly_fields = [field.name for field in Delivery._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False
