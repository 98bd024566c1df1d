"""The /alarms/ page (login required): the user's alarms, live, and their rules with a form."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from alarms.models import Alarm, Condition, Severity
from alarms.overview import alarms_page, rules_applying, rules_slice
from core.requests import AuthenticatedHttpRequest
from devices.selectors import device_list, uid_is_valid

# Alarms per page; older ones are a link away (keyset paging, alarms.overview).
PAGE_SIZE = 50
# Rules the page embeds; the script reads the rest from REST when the user searches them.
RULES_SHOWN = 100
# Device uids the rule form suggests.
DEVICE_CHOICES = 500
# The state filter: the REST filter's values, and both.
STATES = (("active", "Active"), ("cleared", "Cleared"), ("all", "All"))
ACKNOWLEDGED = (("", "Acknowledged or not"), ("no", "Not acknowledged"), ("yes", "Acknowledged"))


def _uid(value: str) -> None:
    if value and not uid_is_valid(value):
        raise forms.ValidationError("not a device uid")


class AlarmFilters(forms.Form):
    """The page's query string: which alarms to list, and from where."""

    state = forms.ChoiceField(choices=STATES, required=False)
    severity = forms.ChoiceField(choices=[("", "Any severity"), *Severity.choices], required=False)
    acknowledged = forms.ChoiceField(choices=ACKNOWLEDGED, required=False)
    device = forms.CharField(max_length=64, required=False, validators=[_uid])
    before = forms.IntegerField(min_value=1, max_value=2**63 - 1, required=False)


def filters_read(request: HttpRequest) -> tuple[dict[str, Any], list[str]]:
    """Return the valid filters (defaults for the others) and a message for each invalid one."""
    form = AlarmFilters(request.GET)
    form.is_valid()
    chosen = {name: form.cleaned_data.get(name) for name in form.fields}
    problems = [
        f"Ignored {name}={request.GET.get(name, '')[:64]!r}: {' '.join(map(str, errors))}"
        for name, errors in form.errors.items()
    ]
    chosen["state"] = chosen.get("state") or "active"
    return chosen, problems


def rest_filters(chosen: dict[str, Any]) -> dict[str, Any]:
    """Translate the page's filters into the REST alarm list's (alarms.selectors.alarms_of)."""
    filters: dict[str, Any] = {}
    if chosen["state"] in Alarm.State.values:
        filters["state"] = chosen["state"]
    if chosen.get("severity"):
        filters["severity"] = chosen["severity"]
    if chosen.get("acknowledged"):
        filters["acknowledged"] = chosen["acknowledged"] == "yes"
    if chosen.get("device"):
        filters["device"] = chosen["device"]
    return filters


# How the rule form names the conditions.
CONDITION_LABELS = {
    "above": "above a threshold",
    "below": "below a threshold",
    "outside": "outside a range",
    "equals": "equal to a value",
    "no_data": "no data for a while",
}


def form_choices() -> dict[str, Any]:
    """Return what the rule form offers: conditions and severities."""
    return {
        "conditions": [(str(value), CONDITION_LABELS[str(value)]) for value in Condition.values],
        "severities": Severity.choices,
    }


@login_required
def alarm_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """List the user's alarms newest first, filtered, a page at a time; and their rules."""
    chosen, problems = filters_read(request)
    filters = rest_filters(chosen)
    page = alarms_page(
        owner=request.user,
        filters=filters,
        before=chosen.get("before"),
        size=PAGE_SIZE,
    )
    alarms = page.alarms
    if page.first and chosen.get("before") is not None:
        problems.append(f"Ignored before={chosen['before']}: not one of your alarms")
    owned = device_list(owner=request.user)
    rules = rules_applying(owner=request.user, device=None)
    query = {name: value for name, value in chosen.items() if value not in (None, "")}
    query.pop("before", None)
    older = f"?{urlencode({**query, 'before': alarms[-1]['id']})}" if page.more else None
    tabs = [
        (value, label, f"?{urlencode({**query, 'state': value})}", value == chosen["state"])
        for value, label in STATES
    ]
    data: dict[str, Any] = {
        "alarms": alarms,
        "filters": {**filters, "state": chosen["state"]},
        "first_page": page.first,
        "page_size": PAGE_SIZE,
        "rules": rules_slice(rules, size=RULES_SHOWN),
        "devices": list(owned.values_list("uid", flat=True)[:DEVICE_CHOICES]),
        "server_now": int(timezone.now().timestamp() * 1000),
    }
    context = {
        "data": data,
        "chosen": chosen,
        "problems": problems,
        "older": older,
        "newest": f"?{urlencode(query)}",
        "tabs": tabs,
        "nav": "alarms",
        # Open the rule form at once when the page has no rule yet.
        "open_form": data["rules"]["total"] == 0,
        "acknowledged_choices": ACKNOWLEDGED,
        **form_choices(),
    }
    return render(request, "alarms/alarms.html", context)


urlpatterns = [path("alarms/", alarm_list, name="alarms-page")]
