"""The header's alarm badge: the user's active alarms that nobody acknowledged (live: badge.js)."""

from __future__ import annotations

from typing import Any

from django import template

from alarms.overview import unacknowledged_count

register = template.Library()

# Past this the badge says "99+": it stays one small pill whatever the count.
BADGE_CAP = 99


def badge_text(count: int) -> str:
    """Return what the badge shows for `count` alarms."""
    return f"{BADGE_CAP}+" if count > BADGE_CAP else str(count)


@register.inclusion_tag("alarms/badge.html", takes_context=True)
def alarm_badge(context: template.Context) -> dict[str, Any]:
    """Render the link to /alarms/ with the count of active, unacknowledged alarms."""
    found = unacknowledged_count(owner=context["user"])
    return {
        "count": found.count,
        "text": badge_text(found.count),
        "worst": found.worst or "",
        "cap": BADGE_CAP,
        "current": context.get("nav") == "alarms",
    }
